package standin

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The entities of a deck file, as a DB-less Kong node holds them after
// loading it (kong/db/declarative, kong/db/schema/entities/*.lua).

// Service is a Kong service (kong/db/schema/entities/services.lua).
type Service struct {
	ID             string
	Name           string
	Protocol       string
	Host           string
	Port           int
	Path           string // "" when null
	Retries        int
	ConnectTimeout int // ms
	WriteTimeout   int // ms
	ReadTimeout    int // ms
	Enabled        bool
	Tags           []string
	CreatedAt      int64
	// entity is the service as the DAO returns it (nulls removed).
	entity map[string]any
}

// Route is a Kong route (kong/db/schema/entities/routes.lua).
type Route struct {
	ID                      string
	Name                    string
	Protocols               []string
	Methods                 []string
	Hosts                   []string
	Paths                   []string
	Headers                 map[string][]string
	StripPath               bool
	PreserveHost            bool
	RegexPriority           int
	PathHandling            string
	HTTPSRedirectStatusCode int
	RequestBuffering        bool
	ResponseBuffering       bool
	Tags                    []string
	CreatedAt               int64
	Service                 *Service
	entity                  map[string]any
}

// Upstream is a Kong upstream with its targets.
type Upstream struct {
	ID         string
	Name       string
	Algorithm  string
	HostHeader string
	Targets    []*Target
	// Healthchecks: nil without a healthchecks entry (healthcheck.go).
	Healthchecks *Healthchecks
	entity       map[string]any
}

// Target is one target of an upstream ("host:port", weight).
type Target struct {
	ID     string
	Target string
	Host   string
	Port   int
	Weight int
}

// Consumer is a Kong consumer.
type Consumer struct {
	ID        string
	Username  string
	CustomID  string
	Tags      []string
	CreatedAt int64
	entity    map[string]any
}

// KeyAuthCredential is a keyauth_credentials entity.
type KeyAuthCredential struct {
	ID        string
	Key       string
	Consumer  *Consumer
	CreatedAt int64
	entity    map[string]any
}

// Plugin is a plugin entity with its processed configuration.
type Plugin struct {
	ID           string
	Name         string
	InstanceName string
	Enabled      bool
	Protocols    []string
	Route        *Route
	Service      *Service
	Consumer     *Consumer
	// Config is the configuration as the plugins iterator reads it
	// (defaults filled, nulls removed).
	Config map[string]any
	// Seq and Key are __seq__ and __key__ (plugins_iterator.lua get_plugin_config).
	Seq int
	Key string
}

// Deck is a loaded deck file.
type Deck struct {
	Services    []*Service
	Routes      []*Route
	Upstreams   []*Upstream
	Consumers   []*Consumer
	Credentials []*KeyAuthCredential
	Plugins     []*Plugin
}

// UpstreamByName returns the upstream with that name.
func (d *Deck) UpstreamByName(name string) *Upstream {
	for _, u := range d.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// ConsumerByUsername returns the consumer with that username.
func (d *Deck) ConsumerByUsername(name string) *Consumer {
	for _, c := range d.Consumers {
		if c.Username == name {
			return c
		}
	}
	return nil
}

// RouteByName returns the route with that name.
func (d *Deck) RouteByName(name string) *Route {
	for _, r := range d.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// deckSchemas are the plugin schemas a deck may configure, by plugin name.
type deckSchemas map[string]map[string]any

// uuidV5 is resty.jit-uuid's factory_v5 (RFC 4122 name-based, SHA-1).
func uuidV5(namespace, name string) string {
	ns, err := hex.DecodeString(strings.ReplaceAll(namespace, "-", ""))
	if err != nil || len(ns) != 16 {
		panic("bad namespace " + namespace)
	}
	h := sha1.New()
	h.Write(ns)
	h.Write([]byte(name))
	sum := h.Sum(nil)[:16]
	sum[6] = (sum[6] & 0x0f) | 0x50
	sum[8] = (sum[8] & 0x3f) | 0x80
	return formatUUID(sum)
}

func formatUUID(b []byte) string {
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return formatUUID(b)
}

// entityUUID is generate_uuid of kong/db/schema/others/declarative_config.lua:
// a v5 UUID in the namespace of the entity's schema name.
func entityUUID(schemaName, key string) string {
	const entities = "fd02801f-0957-4a15-a55a-c8d9606f30b5"
	return uuidV5(uuidV5(entities, schemaName), key)
}

// LoadDeckFile reads and loads a deck file.
func LoadDeckFile(path string, schemas map[string]map[string]any, targets map[string][]string) (*Deck, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := LoadDeck(b, schemas, targets)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// LoadDeck parses a deck file (`_format_version: "3.0"`) and builds the
// entities a DB-less Kong node would hold: deterministic IDs as in
// declarative_config.lua, entity defaults from the entity schemas, plugin
// configurations processed with their plugin schemas (schemas, by plugin
// name). targets replaces the targets of the named upstreams.
func LoadDeck(data []byte, schemas map[string]map[string]any, targets map[string][]string) (*Deck, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("failed parsing declarative configuration: %v", err)
	}
	doc = normalizeValue(doc).(map[string]any)
	l := &deckLoader{schemas: schemas, now: time.Now().Unix(), d: &Deck{}}
	if err := l.load(doc); err != nil {
		return nil, err
	}
	for name, ts := range targets {
		u := l.d.UpstreamByName(name)
		if u == nil {
			return nil, fmt.Errorf("Options.Targets: no upstream named %q in the deck file", name)
		}
		u.Targets = nil
		for _, t := range ts {
			tg, err := parseTarget(t, 100)
			if err != nil {
				return nil, fmt.Errorf("Options.Targets[%q]: %v", name, err)
			}
			tg.ID = entityUUID("targets", "targets:*:"+u.ID+":"+t)
			u.Targets = append(u.Targets, tg)
		}
	}
	return l.d, nil
}

type deckLoader struct {
	schemas deckSchemas
	now     int64
	d       *Deck
	seq     int
	errs    []string
	// pending references of top-level entities, resolved after all are read
	pendingPlugins []pendingPlugin
	pendingRoutes  []pendingRoute
	pendingCreds   []pendingCred
}

type pendingPlugin struct {
	raw                      map[string]any
	where                    string
	route, service, consumer any
	parentRoute              *Route
	parentService            *Service
	parentConsumer           *Consumer
}

type pendingRoute struct {
	raw     map[string]any
	service any
}

type pendingCred struct {
	raw      map[string]any
	consumer any
}

func (l *deckLoader) errorf(format string, args ...any) {
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

func list(v any) []map[string]any {
	raw, _ := v.([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, e := range raw {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func strList(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func intOr(m map[string]any, k string, def int) (int, bool) {
	v, ok := m[k]
	if !ok || v == nil {
		return def, true
	}
	f, ok := toFloat(v)
	if !ok || f != float64(int64(f)) {
		return def, false
	}
	return int(f), true
}

func boolOr(m map[string]any, k string, def bool) (bool, bool) {
	v, ok := m[k]
	if !ok || v == nil {
		return def, true
	}
	b, ok := v.(bool)
	return b, ok
}

var knownTopLevel = map[string]bool{
	"_format_version": true, "_transform": true, "_comment": true, "_info": true, "_workspace": true,
	"_konnect": true, "services": true, "routes": true, "upstreams": true, "targets": true,
	"consumers": true, "plugins": true, "keyauth_credentials": true,
}

func (l *deckLoader) load(doc map[string]any) error {
	fv, ok := doc["_format_version"].(string)
	if !ok {
		return fmt.Errorf("_format_version: required field missing")
	}
	if fv != "1.1" && fv != "2.1" && fv != "3.0" {
		return fmt.Errorf("_format_version: expected one of: 1.1, 2.1, 3.0")
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !knownTopLevel[k] {
			if strings.HasPrefix(k, "_") {
				continue
			}
			l.errorf("%s: unknown field (the stand-in knows services, routes, upstreams, targets, consumers, plugins, keyauth_credentials)", k)
		}
	}
	for i, s := range list(doc["services"]) {
		l.service(s, fmt.Sprintf("services[%d]", i+1))
	}
	for _, r := range list(doc["routes"]) {
		l.pendingRoutes = append(l.pendingRoutes, pendingRoute{raw: r, service: r["service"]})
	}
	for i, u := range list(doc["upstreams"]) {
		l.upstream(u, fmt.Sprintf("upstreams[%d]", i+1))
	}
	for i, t := range list(doc["targets"]) {
		up := l.d.UpstreamByName(refName(t["upstream"]))
		if up == nil {
			l.errorf("targets[%d].upstream: could not find upstream %v", i+1, t["upstream"])
			continue
		}
		l.target(up, t, fmt.Sprintf("targets[%d]", i+1))
	}
	for i, c := range list(doc["consumers"]) {
		l.consumer(c, fmt.Sprintf("consumers[%d]", i+1))
	}
	for _, c := range list(doc["keyauth_credentials"]) {
		l.pendingCreds = append(l.pendingCreds, pendingCred{raw: c, consumer: c["consumer"]})
	}
	for i, p := range list(doc["plugins"]) {
		l.pendingPlugins = append(l.pendingPlugins, pendingPlugin{raw: p, where: fmt.Sprintf("plugins[%d]", i+1),
			route: p["route"], service: p["service"], consumer: p["consumer"]})
	}
	// top-level routes
	for i, pr := range l.pendingRoutes {
		svc := l.findService(pr.service)
		if pr.service != nil && svc == nil {
			l.errorf("routes[%d].service: could not find service %v", i+1, pr.service)
			continue
		}
		l.route(pr.raw, svc, fmt.Sprintf("routes[%d]", i+1))
	}
	for i, pc := range l.pendingCreds {
		c := l.findConsumer(pc.consumer)
		if c == nil {
			l.errorf("keyauth_credentials[%d].consumer: could not find consumer %v", i+1, pc.consumer)
			continue
		}
		l.credential(pc.raw, c, fmt.Sprintf("keyauth_credentials[%d]", i+1))
	}
	for _, pp := range l.pendingPlugins {
		l.plugin(pp)
	}
	if len(l.errs) > 0 {
		return fmt.Errorf("declarative config is invalid: %s", strings.Join(l.errs, "; "))
	}
	return nil
}

func refName(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case map[string]any:
		if s := str(v, "name"); s != "" {
			return s
		}
		if s := str(v, "username"); s != "" {
			return s
		}
		return str(v, "id")
	}
	return ""
}

func (l *deckLoader) findService(ref any) *Service {
	n := refName(ref)
	for _, s := range l.d.Services {
		if n != "" && (s.Name == n || s.ID == n) {
			return s
		}
	}
	return nil
}

func (l *deckLoader) findRoute(ref any) *Route {
	n := refName(ref)
	for _, r := range l.d.Routes {
		if n != "" && (r.Name == n || r.ID == n) {
			return r
		}
	}
	return nil
}

func (l *deckLoader) findConsumer(ref any) *Consumer {
	n := refName(ref)
	for _, c := range l.d.Consumers {
		if n != "" && (c.Username == n || c.ID == n || (c.CustomID != "" && c.CustomID == n)) {
			return c
		}
	}
	return nil
}

// hostType is what the router's upstream_url_t.type says of a host:
// "ipv4", "ipv6" or "name" (kong/tools/ip.lua hostname_type).
func hostType(h string) string {
	ip := net.ParseIP(strings.Trim(h, "[]"))
	switch {
	case ip == nil:
		return "name"
	case ip.To4() != nil:
		return "ipv4"
	default:
		return "ipv6"
	}
}

func (l *deckLoader) service(m map[string]any, where string) {
	s := &Service{CreatedAt: l.now}
	if u := str(m, "url"); u != "" {
		// the url shorthand of services.lua
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			l.errorf("%s.url: missing host in url", where)
			return
		}
		m["protocol"], m["host"] = pu.Scheme, pu.Hostname()
		if p := pu.Port(); p != "" {
			m["port"], _ = strconv.ParseInt(p, 10, 64)
		} else if pu.Scheme == "https" {
			m["port"] = int64(443)
		}
		if pu.Path != "" {
			m["path"] = pu.Path
		}
		delete(m, "url")
	}
	s.Name = str(m, "name")
	s.Host = str(m, "host")
	if s.Host == "" {
		l.errorf("%s.host: required field missing", where)
	}
	s.Protocol = str(m, "protocol")
	if s.Protocol == "" {
		s.Protocol = "http"
	}
	if s.Protocol != "http" && s.Protocol != "https" {
		l.errorf("%s.protocol: the stand-in proxies http and https services only", where)
	}
	var ok bool
	check := func(field string, v int, ok bool, lo, hi int) int {
		if !ok {
			l.errorf("%s.%s: expected an integer", where, field)
		} else if v < lo || v > hi {
			l.errorf("%s.%s: value should be between %d and %d", where, field, lo, hi)
		}
		return v
	}
	s.Port, ok = intOr(m, "port", 80)
	check("port", s.Port, ok, 0, 65535)
	s.Retries, ok = intOr(m, "retries", 5)
	check("retries", s.Retries, ok, 0, 32767)
	s.ConnectTimeout, ok = intOr(m, "connect_timeout", 60000)
	check("connect_timeout", s.ConnectTimeout, ok, 1, 2147483646)
	s.WriteTimeout, ok = intOr(m, "write_timeout", 60000)
	check("write_timeout", s.WriteTimeout, ok, 1, 2147483646)
	s.ReadTimeout, ok = intOr(m, "read_timeout", 60000)
	check("read_timeout", s.ReadTimeout, ok, 1, 2147483646)
	s.Enabled, _ = boolOr(m, "enabled", true)
	s.Path = str(m, "path")
	s.Tags = strList(m["tags"])
	s.ID = str(m, "id")
	if s.ID == "" {
		if s.Name != "" {
			s.ID = entityUUID("services", s.Name)
		} else {
			s.ID = randomUUID()
		}
	}
	s.entity = map[string]any{
		"id": s.ID, "created_at": s.CreatedAt, "updated_at": s.CreatedAt, "protocol": s.Protocol,
		"host": s.Host, "port": int64(s.Port), "retries": int64(s.Retries),
		"connect_timeout": int64(s.ConnectTimeout), "write_timeout": int64(s.WriteTimeout),
		"read_timeout": int64(s.ReadTimeout), "enabled": s.Enabled, "ws_id": defaultWorkspaceID,
	}
	if s.Name != "" {
		s.entity["name"] = s.Name
	}
	if s.Path != "" {
		s.entity["path"] = s.Path
	}
	if len(s.Tags) > 0 {
		s.entity["tags"] = anyList(s.Tags)
	}
	l.d.Services = append(l.d.Services, s)
	for i, r := range list(m["routes"]) {
		l.route(r, s, fmt.Sprintf("%s.routes[%d]", where, i+1))
	}
	for i, p := range list(m["plugins"]) {
		l.pendingPlugins = append(l.pendingPlugins, pendingPlugin{raw: p, where: fmt.Sprintf("%s.plugins[%d]", where, i+1),
			parentService: s, route: p["route"], consumer: p["consumer"]})
	}
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

func (l *deckLoader) route(m map[string]any, svc *Service, where string) {
	r := &Route{CreatedAt: l.now, Service: svc}
	r.Name = str(m, "name")
	r.Protocols = strList(m["protocols"])
	if len(r.Protocols) == 0 {
		r.Protocols = []string{"http", "https"}
	}
	r.Methods = strList(m["methods"])
	r.Hosts = strList(m["hosts"])
	r.Paths = strList(m["paths"])
	if hm, ok := m["headers"].(map[string]any); ok {
		r.Headers = map[string][]string{}
		for k, v := range hm {
			if l, ok := v.([]any); ok {
				r.Headers[strings.ToLower(k)] = strList(l)
			} else {
				r.Headers[strings.ToLower(k)] = []string{fmt.Sprint(v)}
			}
		}
	}
	var ok bool
	if r.StripPath, ok = boolOr(m, "strip_path", true); !ok {
		l.errorf("%s.strip_path: expected a boolean", where)
	}
	if r.PreserveHost, ok = boolOr(m, "preserve_host", false); !ok {
		l.errorf("%s.preserve_host: expected a boolean", where)
	}
	r.RequestBuffering, _ = boolOr(m, "request_buffering", true)
	r.ResponseBuffering, _ = boolOr(m, "response_buffering", true)
	r.RegexPriority, _ = intOr(m, "regex_priority", 0)
	r.HTTPSRedirectStatusCode, _ = intOr(m, "https_redirect_status_code", 426)
	r.PathHandling = str(m, "path_handling")
	if r.PathHandling == "" {
		r.PathHandling = "v0"
	}
	r.Tags = strList(m["tags"])
	if len(r.Paths) == 0 && len(r.Hosts) == 0 && len(r.Methods) == 0 && len(r.Headers) == 0 {
		l.errorf("%s: must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'", where)
	}
	for i, p := range r.Paths {
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~") {
			l.errorf("%s.paths[%d]: should start with: / (fixed path) or ~/ (regex path)", where, i+1)
		}
	}
	r.ID = str(m, "id")
	if r.ID == "" {
		if r.Name != "" {
			r.ID = entityUUID("routes", r.Name)
		} else {
			r.ID = randomUUID()
		}
	}
	r.entity = map[string]any{
		"id": r.ID, "created_at": r.CreatedAt, "updated_at": r.CreatedAt, "protocols": anyList(r.Protocols),
		"strip_path": r.StripPath, "preserve_host": r.PreserveHost, "regex_priority": int64(r.RegexPriority),
		"path_handling": r.PathHandling, "https_redirect_status_code": int64(r.HTTPSRedirectStatusCode),
		"request_buffering": r.RequestBuffering, "response_buffering": r.ResponseBuffering,
		"ws_id": defaultWorkspaceID,
	}
	if r.Name != "" {
		r.entity["name"] = r.Name
	}
	for k, v := range map[string][]string{"methods": r.Methods, "hosts": r.Hosts, "paths": r.Paths, "tags": r.Tags} {
		if len(v) > 0 {
			r.entity[k] = anyList(v)
		}
	}
	if r.Headers != nil {
		hm := map[string]any{}
		for k, v := range r.Headers {
			hm[k] = anyList(v)
		}
		r.entity["headers"] = hm
	}
	if svc != nil {
		r.entity["service"] = map[string]any{"id": svc.ID}
	}
	l.d.Routes = append(l.d.Routes, r)
	for i, p := range list(m["plugins"]) {
		l.pendingPlugins = append(l.pendingPlugins, pendingPlugin{raw: p, where: fmt.Sprintf("%s.plugins[%d]", where, i+1),
			parentRoute: r, service: p["service"], consumer: p["consumer"]})
	}
}

// parseTarget splits "host:port" (port 8000 by default, as targets.lua does).
func parseTarget(t string, weight int) (*Target, error) {
	host, port := t, 8000
	if h, p, err := net.SplitHostPort(t); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid target %q", t)
		}
		host, port = h, n
	} else if strings.Count(t, ":") > 1 && !strings.HasPrefix(t, "[") {
		host = t // bare IPv6
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return nil, fmt.Errorf("invalid target %q", t)
	}
	return &Target{Target: t, Host: host, Port: port, Weight: weight}, nil
}

func (l *deckLoader) upstream(m map[string]any, where string) {
	u := &Upstream{Name: str(m, "name"), Algorithm: str(m, "algorithm"), HostHeader: str(m, "host_header")}
	if u.Name == "" {
		l.errorf("%s.name: required field missing", where)
		return
	}
	if u.Algorithm == "" {
		u.Algorithm = "round-robin"
	}
	if u.Algorithm != "round-robin" {
		l.errorf("%s.algorithm: the stand-in balances with round-robin only (got %q)", where, u.Algorithm)
	}
	u.ID = str(m, "id")
	if u.ID == "" {
		u.ID = entityUUID("upstreams", u.Name)
	}
	u.entity = map[string]any{"id": u.ID, "name": u.Name, "algorithm": u.Algorithm}
	u.Healthchecks = l.parseHealthchecks(m["healthchecks"], where+".healthchecks")
	l.d.Upstreams = append(l.d.Upstreams, u)
	for i, t := range list(m["targets"]) {
		l.target(u, t, fmt.Sprintf("%s.targets[%d]", where, i+1))
	}
}

func (l *deckLoader) target(u *Upstream, m map[string]any, where string) {
	w, ok := intOr(m, "weight", 100)
	if !ok || w < 0 || w > 65535 {
		l.errorf("%s.weight: value should be between 0 and 65535", where)
		return
	}
	tg, err := parseTarget(str(m, "target"), w)
	if err != nil {
		l.errorf("%s.target: %v", where, err)
		return
	}
	tg.ID = str(m, "id")
	if tg.ID == "" {
		tg.ID = entityUUID("targets", "targets:*:"+u.ID+":"+tg.Target)
	}
	u.Targets = append(u.Targets, tg)
}

func (l *deckLoader) consumer(m map[string]any, where string) {
	c := &Consumer{Username: str(m, "username"), CustomID: str(m, "custom_id"), Tags: strList(m["tags"]), CreatedAt: l.now}
	if c.Username == "" && c.CustomID == "" {
		l.errorf("%s: at least one of these fields must be non-empty: 'custom_id', 'username'", where)
		return
	}
	c.ID = str(m, "id")
	if c.ID == "" {
		if c.Username != "" {
			c.ID = entityUUID("consumers", c.Username)
		} else {
			c.ID = randomUUID()
		}
	}
	c.entity = map[string]any{"id": c.ID, "created_at": c.CreatedAt, "updated_at": c.CreatedAt}
	if c.Username != "" {
		c.entity["username"] = c.Username
	}
	if c.CustomID != "" {
		c.entity["custom_id"] = c.CustomID
	}
	if len(c.Tags) > 0 {
		c.entity["tags"] = anyList(c.Tags)
	}
	l.d.Consumers = append(l.d.Consumers, c)
	for i, k := range list(m["keyauth_credentials"]) {
		l.credential(k, c, fmt.Sprintf("%s.keyauth_credentials[%d]", where, i+1))
	}
	for i, p := range list(m["plugins"]) {
		l.pendingPlugins = append(l.pendingPlugins, pendingPlugin{raw: p, where: fmt.Sprintf("%s.plugins[%d]", where, i+1),
			parentConsumer: c, route: p["route"], service: p["service"]})
	}
}

func (l *deckLoader) credential(m map[string]any, c *Consumer, where string) {
	k := &KeyAuthCredential{Key: str(m, "key"), Consumer: c, CreatedAt: l.now}
	if k.Key == "" {
		// keyauth_credentials.key is auto-generated when absent.
		k.Key = strings.ReplaceAll(randomUUID(), "-", "")
	}
	for _, other := range l.d.Credentials {
		if other.Key == k.Key {
			l.errorf("%s.key: uniqueness violation: 'keyauth_credentials' entity with key set to '%s' already declared", where, k.Key)
			return
		}
	}
	// key is an `auto` field, so declarative_config.lua generates no
	// deterministic id: the id is random on every node.
	k.ID = str(m, "id")
	if k.ID == "" {
		k.ID = randomUUID()
	}
	k.entity = map[string]any{"id": k.ID, "created_at": k.CreatedAt, "key": k.Key,
		"consumer": map[string]any{"id": c.ID}}
	l.d.Credentials = append(l.d.Credentials, k)
}

func (l *deckLoader) plugin(pp pendingPlugin) {
	m := pp.raw
	where := pp.where
	p := &Plugin{Name: str(m, "name"), InstanceName: str(m, "instance_name"), Route: pp.parentRoute,
		Service: pp.parentService, Consumer: pp.parentConsumer}
	if p.Name == "" {
		l.errorf("%s.name: required field missing", where)
		return
	}
	schema, ok := l.schemas[p.Name]
	if !ok {
		if bundledPlugins[p.Name] {
			l.errorf("%s: plugin '%s' is bundled with Kong but not emulated by the stand-in", where, p.Name)
		} else {
			l.errorf("%s: plugin '%s' not enabled; add it to the 'plugins' configuration property", where, p.Name)
		}
		return
	}
	if pp.route != nil && p.Route == nil {
		if p.Route = l.findRoute(pp.route); p.Route == nil {
			l.errorf("%s.route: could not find route %v", where, pp.route)
			return
		}
	}
	if pp.service != nil && p.Service == nil {
		if p.Service = l.findService(pp.service); p.Service == nil {
			l.errorf("%s.service: could not find service %v", where, pp.service)
			return
		}
	}
	if pp.consumer != nil && p.Consumer == nil {
		if p.Consumer = l.findConsumer(pp.consumer); p.Consumer == nil {
			l.errorf("%s.consumer: could not find consumer %v", where, pp.consumer)
			return
		}
	}
	if p.Consumer != nil {
		if def := pluginTopField(schema, "consumer"); def != nil {
			if e, has := def["eq"]; has && e == nil {
				l.errorf("%s.consumer: value must be null", where)
				return
			}
		}
	}
	p.Enabled, _ = boolOr(m, "enabled", true)
	p.Protocols = strList(m["protocols"])
	if len(p.Protocols) == 0 {
		if def := pluginTopField(schema, "protocols"); def != nil {
			p.Protocols = strList(def["default"])
		}
		if len(p.Protocols) == 0 {
			p.Protocols = []string{"grpc", "grpcs", "http", "https"}
		}
	}
	if def := pluginTopField(schema, "protocols"); def != nil {
		if el, ok := def["elements"].(map[string]any); ok {
			for i, pr := range p.Protocols {
				if msg := runValidators(el, pr); msg != "" {
					l.errorf("%s.protocols[%d]: %s", where, i+1, msg)
					return
				}
			}
		}
	}
	cfg, _ := m["config"].(map[string]any)
	if m["config"] != nil && cfg == nil {
		l.errorf("%s.config: expected a record", where)
		return
	}
	processed, err := processPluginConfig(schema, cfg)
	if err != nil {
		if se, ok := err.(SchemaErrors); ok {
			for _, fe := range se {
				l.errorf("%s (plugin '%s'): %s", where, p.Name, fe.Error())
			}
		} else {
			l.errorf("%s (plugin '%s'): %v", where, p.Name, err)
		}
		return
	}
	p.Config = processed
	// generate_ids: plugins have cache_key {name, route, service, consumer}
	routeRef, svcRef, consRef := "", "", ""
	if p.Route != nil {
		routeRef = p.Route.ID
		if s, ok := pp.route.(string); ok && pp.parentRoute == nil {
			routeRef = s // a top-level plugin names its route as written
		}
	}
	if p.Service != nil {
		svcRef = p.Service.ID
		if s, ok := pp.service.(string); ok && pp.parentService == nil {
			svcRef = s
		}
	}
	if p.Consumer != nil {
		consRef = p.Consumer.ID
		if s, ok := pp.consumer.(string); ok && pp.parentConsumer == nil {
			consRef = s
		}
	}
	p.ID = str(m, "id")
	if p.ID == "" {
		p.ID = entityUUID("plugins", "plugins:*:"+p.Name+":"+routeRef+":"+svcRef+":"+consRef)
	}
	for _, other := range l.d.Plugins {
		if other.Name == p.Name && other.Route == p.Route && other.Service == p.Service && other.Consumer == p.Consumer {
			l.errorf("%s: uniqueness violation: 'plugins' entity with name '%s' for this route/service/consumer already declared", where, p.Name)
			return
		}
	}
	// plugins_iterator.lua get_plugin_config: __key__ is the DAO cache key,
	// __seq__ a node-wide counter.
	l.seq++
	p.Seq = l.seq
	rid, sid, cid := "", "", ""
	if p.Route != nil {
		rid = p.Route.ID
	}
	if p.Service != nil {
		sid = p.Service.ID
	}
	if p.Consumer != nil {
		cid = p.Consumer.ID
	}
	p.Key = fmt.Sprintf("plugins:%s:%s:%s:%s::%s", p.Name, rid, sid, cid, defaultWorkspaceID)
	l.d.Plugins = append(l.d.Plugins, p)
}

// bundledPlugins are Kong 3.9's bundled plugins (kong/constants.lua), so a
// deck naming one gets a clear message rather than "not enabled".
var bundledPlugins = map[string]bool{
	"jwt": true, "acl": true, "correlation-id": true, "cors": true, "oauth2": true, "tcp-log": true,
	"udp-log": true, "file-log": true, "http-log": true, "key-auth": true, "hmac-auth": true,
	"basic-auth": true, "ip-restriction": true, "request-transformer": true, "response-transformer": true,
	"request-size-limiting": true, "rate-limiting": true, "response-ratelimiting": true, "syslog": true,
	"loggly": true, "datadog": true, "ldap-auth": true, "statsd": true, "bot-detection": true,
	"aws-lambda": true, "request-termination": true, "prometheus": true, "proxy-cache": true,
	"session": true, "acme": true, "grpc-gateway": true, "grpc-web": true, "pre-function": true,
	"post-function": true, "azure-functions": true, "zipkin": true, "opentelemetry": true,
	"ai-proxy": true, "ai-prompt-decorator": true, "ai-prompt-template": true, "ai-prompt-guard": true,
	"ai-request-transformer": true, "ai-response-transformer": true, "standard-webhooks": true,
	"redirect": true,
}
