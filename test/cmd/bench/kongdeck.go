package main

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"gopkg.in/yaml.v3"
)

// kongRoute is one route of the real-Kong node: path /r/<name> (stripped),
// on one service, with key-auth (anonymous allowed, as in the deck file)
// and at most one more plugin.
type kongRoute struct {
	name         string
	service      string         // a key of the node's upstreams
	plugin       string         // "", "mcp-relay", baselineName or a bench plugin's name
	config       map[string]any // the plugin's configuration (mcp-relay: merged into the deck file's)
	preserveHost bool
}

// kongDeck is the node's deck file: one upstream and one service per entry
// of upstreams (each upstream with the given targets), built from the deck
// file's upstream, service, key-auth and mcp-relay entries and consumers,
// so that the routes run what users run. The upstreams named in unchecked
// have no health checks.
func kongDeck(path string, upstreams map[string][]string, unchecked map[string]bool, routes []kongRoute) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ups, _ := doc["upstreams"].([]any)
	svcs, _ := doc["services"].([]any)
	if len(ups) == 0 || len(svcs) == 0 {
		return nil, fmt.Errorf("%s: no upstream or no service", path)
	}
	upTemplate, _ := ups[0].(map[string]any)
	svcTemplate, _ := svcs[0].(map[string]any)
	routesIn, _ := svcTemplate["routes"].([]any)
	if upTemplate == nil || svcTemplate == nil || len(routesIn) == 0 {
		return nil, fmt.Errorf("%s: no route", path)
	}
	route0, _ := routesIn[0].(map[string]any)
	var keyAuth, relay map[string]any
	for _, p := range asList(route0["plugins"]) {
		m, _ := p.(map[string]any)
		switch m["name"] {
		case "key-auth":
			keyAuth, _ = m["config"].(map[string]any)
		case "mcp-relay":
			relay, _ = m["config"].(map[string]any)
		}
	}
	if keyAuth == nil || relay == nil {
		return nil, errors.New(path + ": the first route has no key-auth or no mcp-relay entry")
	}

	names := make([]string, 0, len(upstreams))
	for n := range upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	var outUps, outSvcs []any
	svcRoutes := map[string][]any{}
	for _, r := range routes {
		if _, ok := upstreams[r.service]; !ok {
			return nil, fmt.Errorf("route %s: no upstream %q", r.name, r.service)
		}
		plugins := []any{map[string]any{"name": "key-auth", "config": keyAuth}}
		switch r.plugin {
		case "":
		case "mcp-relay", baselineName:
			plugins = append(plugins, map[string]any{"name": r.plugin, "config": mergeConfig(relay, r.config)})
		default:
			cfg := r.config
			if cfg == nil {
				cfg = map[string]any{}
			}
			plugins = append(plugins, map[string]any{"name": r.plugin, "config": cfg})
		}
		route := map[string]any{"name": r.name, "paths": []any{"/r/" + r.name}, "strip_path": true, "plugins": plugins}
		if r.preserveHost {
			route["preserve_host"] = true
		}
		svcRoutes[r.service] = append(svcRoutes[r.service], route)
	}
	for _, n := range names {
		up := copyMap(upTemplate)
		up["name"] = n
		var targets []any
		for _, t := range upstreams[n] {
			targets = append(targets, map[string]any{"target": t})
		}
		up["targets"] = targets
		if unchecked[n] {
			delete(up, "healthchecks")
		}
		outUps = append(outUps, up)
		svc := copyMap(svcTemplate)
		svc["name"] = n
		svc["host"] = n
		svc["port"] = 80
		svc["routes"] = svcRoutes[n]
		outSvcs = append(outSvcs, svc)
	}
	doc["upstreams"] = outUps
	doc["services"] = outSvcs
	return yaml.Marshal(doc)
}

func asList(v any) []any { l, _ := v.([]any); return l }

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// mergeConfig is base with add merged in, one level deep ({"tools": {...}}).
func mergeConfig(base, add map[string]any) map[string]any {
	out := copyMap(base)
	for k, v := range add {
		sub, _ := out[k].(map[string]any)
		more, _ := v.(map[string]any)
		if sub == nil || more == nil {
			out[k] = v
			continue
		}
		merged := copyMap(sub)
		for kk, vv := range more {
			merged[kk] = vv
		}
		out[k] = merged
	}
	return out
}
