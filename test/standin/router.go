package standin

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The router of Kong 3.9's default flavor, traditional_compatible
// (kong/router/atc.lua with priorities from kong/router/transform.lua
// get_priority): a route matches when each of its methods, hosts, headers
// and paths conditions does; candidates are ordered by priority; prefix
// paths are plain string prefixes of the normalized path, regex paths
// ("~...") are anchored at its start.

type routeCandidate struct {
	route    *Route
	path     string // "" when the route has no paths
	regex    *regexp.Regexp
	priority uint64
	order    int
}

type router struct {
	cands []*routeCandidate
}

// routeMatch is the router's match_t.
type routeMatch struct {
	route       *Route
	prefix      string // the matched prefix, when stripped
	upstreamURI string
	unnamed     []string
	named       map[string]string
}

func routePriority(r *Route, path string) uint64 {
	var weight uint64
	if len(r.Methods) > 0 {
		weight++
	}
	if len(r.Hosts) > 0 {
		weight++
	}
	if len(r.Headers) > 0 {
		weight++
	}
	plainHostOnly := len(r.Hosts) > 0
	for _, h := range r.Hosts {
		if strings.Contains(h, "*") {
			plainHostOnly = false
		}
	}
	regexURL := false
	uriLength := 0
	if path != "" {
		weight++
		if strings.HasPrefix(path, "~") {
			regexURL = true
		} else {
			uriLength = len(path)
		}
	}
	p := weight << 61
	if plainHostOnly {
		p |= 1 << 60
	}
	p |= uint64(min(len(r.Headers), 255)) << 52
	if regexURL {
		p |= 1 << 51
		p |= uint64(r.RegexPriority) << 19
	}
	p |= uint64(uriLength & 0x7FFFF)
	return p
}

func newRouter(routes []*Route) (*router, error) {
	rt := &router{}
	n := 0
	for _, r := range routes {
		paths := r.Paths
		if len(paths) == 0 {
			paths = []string{""}
		}
		for _, p := range paths {
			c := &routeCandidate{route: r, path: p, priority: routePriority(r, p), order: n}
			n++
			if strings.HasPrefix(p, "~") {
				re, err := regexp.Compile("^(?:" + p[1:] + ")")
				if err != nil {
					return nil, err
				}
				c.regex = re
			}
			rt.cands = append(rt.cands, c)
		}
	}
	sort.SliceStable(rt.cands, func(i, j int) bool {
		if rt.cands[i].priority != rt.cands[j].priority {
			return rt.cands[i].priority > rt.cands[j].priority
		}
		return rt.cands[i].order < rt.cands[j].order
	})
	return rt, nil
}

func hostMatches(patterns []string, host string, port int) bool {
	hp := host + ":" + strconv.Itoa(port)
	for _, p := range patterns {
		p = strings.ToLower(p)
		switch {
		case p == host || p == hp:
			return true
		case strings.HasPrefix(p, "*.") || strings.HasPrefix(p, "*"):
			if strings.HasSuffix(host, p[1:]) || strings.HasSuffix(hp, p[1:]) {
				return true
			}
		case strings.HasSuffix(p, ".*"):
			if strings.HasPrefix(host, p[:len(p)-1]) {
				return true
			}
		}
	}
	return false
}

// match finds the route of a request and computes upstream_uri (path
// handling v0, kong/router/utils.lua get_upstream_uri_v0).
func (rt *router) match(r *reqCtx) *routeMatch {
	rawPath := r.requestURI
	if i := strings.IndexByte(rawPath, '?'); i >= 0 {
		rawPath = rawPath[:i]
	}
	path := normalizePath(rawPath)
	for _, c := range rt.cands {
		route := c.route
		if len(route.Methods) > 0 {
			ok := false
			for _, m := range route.Methods {
				if strings.EqualFold(m, r.method) {
					ok = true
				}
			}
			if !ok {
				continue
			}
		}
		if len(route.Hosts) > 0 && !hostMatches(route.Hosts, r.host, r.serverPort) {
			continue
		}
		if len(route.Headers) > 0 {
			ok := true
			for name, want := range route.Headers {
				got := r.headers.values(name)
				found := false
				for _, g := range got {
					for _, w := range want {
						if strings.EqualFold(g, w) {
							found = true
						}
					}
				}
				ok = ok && found
			}
			if !ok {
				continue
			}
		}
		m := &routeMatch{route: route, named: map[string]string{}}
		postfix := path
		matched := ""
		if c.path != "" {
			if c.regex != nil {
				loc := c.regex.FindStringSubmatchIndex(path)
				if loc == nil {
					continue
				}
				matched = path[:loc[1]]
				names := c.regex.SubexpNames()
				for i := 1; i < len(names); i++ {
					if loc[2*i] < 0 {
						m.unnamed = append(m.unnamed, "")
						continue
					}
					v := path[loc[2*i]:loc[2*i+1]]
					m.unnamed = append(m.unnamed, v)
					if names[i] != "" {
						m.named[names[i]] = v
					}
				}
			} else {
				if !strings.HasPrefix(path, c.path) {
					continue
				}
				matched = c.path
			}
			postfix = path[len(matched):]
		}
		base := "/"
		if route.Service != nil && route.Service.Path != "" {
			base = route.Service.Path
		}
		if route.StripPath && matched != "" {
			m.prefix = matched
		} else {
			postfix = ""
		}
		m.upstreamURI = upstreamURIv0(route.StripPath && matched != "", postfix, path, base)
		return m
	}
	return nil
}

func upstreamURIv0(stripPath bool, postfix, reqURI, base string) string {
	if strings.HasSuffix(base, "/") {
		if stripPath {
			if postfix == "" {
				if base == "/" {
					return "/"
				}
				if strings.HasSuffix(reqURI, "/") {
					return base
				}
				return base[:len(base)-1]
			}
			if strings.HasPrefix(postfix, "/") {
				return base[:len(base)-1] + postfix
			}
			return base + postfix
		}
		return base + reqURI[1:]
	}
	if stripPath {
		if postfix == "" {
			if len(reqURI) > 1 && strings.HasSuffix(reqURI, "/") {
				return base + "/"
			}
			return base
		}
		if strings.HasPrefix(postfix, "/") {
			return base + postfix
		}
		return base + "/" + postfix
	}
	if reqURI == "/" {
		return base
	}
	return base + reqURI
}
