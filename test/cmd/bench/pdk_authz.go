package main

import (
	"context"
	"fmt"
	"net/http"
)

// authzRelayConfig: access rules that depend on the caller (demo may not
// call progress), as a route with per-consumer rules runs them.
var authzRelayConfig = map[string]any{
	"tools": map[string]any{"deny": []any{"sleep"},
		"rules": []any{map[string]any{"consumers": []any{"demo"}, "deny": []any{"progress"}}}},
}

// authzKinds runs the request kinds whose cost access rules, log fields and
// protected-resource metadata change, each on a node configured for it.
// Without them configured the rows above are unchanged.
func authzKinds(ctx context.Context, e *env, col *collector, run func(string, *http.Request)) (closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
	}
	start := func(cfg map[string]any) (string, string, error) {
		n, err := startNodeWith(ctx, e.c, true, cfg, []string{e.legacyA, e.legacyB}, col.onRecord)
		if err != nil {
			return "", "", err
		}
		closers = append(closers, func() { n.Close() })
		s, err := openSession(e.client, n.URL()) // warms the instance up too
		return n.URL(), s, err
	}
	rules, rs, err := start(authzRelayConfig)
	if err != nil {
		return closeAll, fmt.Errorf("node with access rules: %w", err)
	}
	logged, ls, err := start(map[string]any{"log": map[string]any{"serialize": true}})
	if err != nil {
		return closeAll, fmt.Errorf("node with log fields: %w", err)
	}
	prm, _, err := start(map[string]any{"auth": map[string]any{"resource_metadata": map[string]any{
		"authorization_servers": []any{"https://auth.example.com"}}}})
	if err != nil {
		return closeAll, fmt.Errorf("node with resource metadata: %w", err)
	}

	run("access rules: pinned tools/call allowed", newRequest(http.MethodPost, rules, echoBody(), sessionHeaders(rs)...))
	run("access rules: pinned tools/call denied", newRequest(http.MethodPost, rules, progressBody(), sessionHeaders(rs)...))
	run("access rules: pinned tools/list, entries hidden", newRequest(http.MethodPost, rules, listBody(), sessionHeaders(rs)...))
	run("log.serialize: pinned tools/call", newRequest(http.MethodPost, logged, echoBody(), sessionHeaders(ls)...))
	run("resource_metadata: anonymous initialize", newRequest(http.MethodPost, prm, initializeBody()))
	return closeAll, nil
}
