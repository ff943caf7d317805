package schema

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/mcp-relay/mcp-relay/session"
)

// kind is a Kong field type. Only the types mcp-relay uses are listed; the
// Kong schema checker in the tests knows the rest.
type kind string

const (
	kString  kind = "string"
	kInteger kind = "integer"
	kBoolean kind = "boolean"
	kArray   kind = "array"
	kSet     kind = "set" // an array whose duplicates Kong (and Parse) drop
	kRecord  kind = "record"
)

// field describes one configuration setting. The table below is the single
// source of truth for defaults (Defaults), decoding (Parse), validation
// (Validate), the schema Kong enforces (KongSchema) and the reference in docs/configuration.md
// (MarkdownReference).
type field struct {
	name string // JSON name, the same in Kong and in the Go types
	typ  kind
	doc  string // one or more full sentences; Kong's description (10..500 chars)

	// def is the default: string, int, bool, []int or []string. nil means no
	// default: Kong keeps null and Go keeps the zero value ("" or nil), both
	// meaning "unset".
	def any
	// required: Kong never holds null here. Records are required so that Kong
	// fills in their nested defaults; settings with a default are required so
	// that Kong always shows and sends a value; record elements of arrays
	// require their identifying fields.
	required bool

	oneOf      []string // strings: allowed values
	between    *[2]int  // integers: inclusive bounds
	notBetween *[2]int  // integers: forbidden inclusive range (Kong: a conditional entity check of the record)
	allowEmpty bool     // strings: "" is a value (Kong len_min 0; Kong's default is 1)
	noControl  bool     // strings: no control characters (header values); Kong not_match "%c"
	match      *pattern // strings: must match (Kong match and len_eq)

	referenceable bool // strings: may be a Kong vault reference ({vault://...})
	encrypted     bool // strings: Kong Enterprise keyring-encrypts it at rest

	elements *field   // array, set
	fields   []*field // record
	checks   []check  // record: rules across its fields

	index []int // record member: index of the Go struct field (set by bind)
}

// pattern is a string rule written twice: as a Lua pattern with an exact
// length for Kong (Schema.validators.match, len_eq), and as a Go regular
// expression for Validate. A test holds them to the same values.
type pattern struct {
	lua    string
	length int // 0: any
	re     *regexp.Regexp
	what   string // for error messages: "`sha256:` followed by ..."
}

// check is a cross-field rule of a record, written with Kong's entity
// checkers of the same name so that Kong enforces it too. A field counts as
// set when it is neither null, "" nor an empty array (Kong's is_nonempty; the
// Go zero values).
type check struct {
	// mutuallyRequired: either all of these fields are set, or none.
	mutuallyRequired []string
	// exclusiveSets: fields of set1 and fields of set2 cannot both be set.
	exclusiveSets *[2][]string
	// whenSet: a rule on an integer field that holds while another field
	// is set (Kong: a conditional entity check).
	whenSet *condition
}

// condition says: while field ifSet is set, integer field then must equal
// equals, because of why.
type condition struct {
	ifSet, then string
	equals      int
	why         string
}

func rng(lo, hi int) *[2]int { return &[2]int{lo, hi} }

const (
	maxInt32 = 1<<31 - 1
	minInt32 = -1 << 31
	mib      = 1 << 20
)

// defaultBufferMethods are the JSON-RPC methods buffered by default: MCP
// methods whose answers are short and not streamed.
var defaultBufferMethods = []string{
	"initialize", "ping", "tools/list", "prompts/list", "resources/list",
	"resources/templates/list", "completion/complete", "logging/setLevel",
}

// root is the plugin's `config` record.
var root = &field{
	name:     "config",
	typ:      kRecord,
	required: true,
	doc:      "Configuration of one mcp-relay plugin instance (one per route or service).",
	fields: []*field{
		{
			name: "auth", typ: kRecord, required: true,
			doc: "How requests that Kong's auth plugins rejected are recognized, and what their error envelopes carry.",
			fields: []*field{
				{
					name: "anonymous", typ: kString,
					doc: "Consumer (id or username) that the route's auth plugins fall back to with their `anonymous` option; " +
						"a request arriving as this consumer gets the auth error envelope. " +
						"Unset: only Kong's X-Anonymous-Consumer header marks such requests.",
				},
				{
					name: "www_authenticate", typ: kString, noControl: true,
					doc: "WWW-Authenticate header sent with auth error envelopes, for example " +
						"`Bearer resource_metadata=\"https://example.com/.well-known/oauth-protected-resource\"`. " +
						"Unset: no such header is sent.",
				},
				resourceMetadataField,
			},
		},
		{
			name: "envelope", typ: kRecord, required: true,
			doc: "Shape of the JSON-RPC error answers (envelopes) the plugin writes.",
			fields: []*field{
				{
					name: "status", typ: kString, required: true, def: "auto",
					oneOf: []string{"auto", "keep", "200"},
					doc: "HTTP status of auth error envelopes. `auto` keeps 401/403 for 2026-07-28 requests and when " +
						"www_authenticate names resource_metadata (OAuth discovery), and uses 200 otherwise; " +
						"`keep` always keeps 401/403; `200` always uses 200, so strict legacy clients show the JSON-RPC error. " +
						"Envelopes without an id always keep their status.",
				},
				{
					name: "auth_code", typ: kInteger, required: true, def: -32001,
					between: rng(minInt32, maxInt32),
					doc:     "JSON-RPC error code of auth errors (401, 403) answered to legacy requests. Any 32-bit integer.",
				},
				{
					name: "auth_message", typ: kString, required: true, def: DefaultAuthMessage,
					doc: "JSON-RPC error message of 401 auth errors (403 errors say `Forbidden`). " +
						"Keep the word `Unauthorized` out of it: mcp-remote takes any error whose message contains it " +
						"for an OAuth challenge and waits for a browser sign-in that never comes.",
				},
				{
					name: "modern_auth_code", typ: kInteger, required: true, def: -31001,
					between: rng(minInt32, maxInt32), notBetween: rng(-32768, -32000),
					doc: "JSON-RPC error code of auth errors answered to 2026-07-28 requests. " +
						"It must lie outside -32768..-32000: JSON-RPC reserves that range, and the 2026-07-28 spec reserves -32000..-32099.",
				},
				{
					name: "max_body_bytes", typ: kInteger, required: true, def: mib,
					between: rng(1024, 64*mib),
					doc:     "Largest request body, in bytes, that is read for its JSON-RPC id; larger requests get envelopes with a null id.",
				},
			},
		},
		{
			name: "upstream", typ: kRecord, required: true,
			doc: "Which upstream answers are rewritten into envelopes, and so which requests are buffered to make that possible.",
			fields: []*field{
				{
					name: "rewrite_statuses", typ: kSet, required: true, def: []int{401, 403, 502, 503, 504},
					elements: &field{typ: kInteger, required: true, between: rng(400, 599)},
					doc: "HTTP statuses (from the upstream or from Kong itself) turned into JSON-RPC error envelopes " +
						"for buffered requests. An empty list rewrites nothing.",
				},
				{
					name: "buffer_methods", typ: kSet, required: true, def: defaultBufferMethods,
					elements: &field{typ: kString, required: true},
					doc: "JSON-RPC methods whose requests are proxied buffered, so that their error answers can be rewritten. " +
						"Other requests (tools/call, SSE streams) stream unbuffered. An empty list buffers nothing but, " +
						"while a session store is on, legacy `initialize` (its answer names the new session).",
				},
				{
					name: "host_header", typ: kString, noControl: true,
					doc: "Host header sent on requests pinned to a replica. Unset: the Host Kong sends when it balances " +
						"(the target's address with its port unless it is the scheme's default, or the client's Host with the " +
						"route's preserve_host). Set it when the upstream has a host_header or its targets are given by name.",
				},
				{
					name: "set_method_headers", typ: kBoolean, required: true, def: false,
					doc: "Whether legacy requests get the `Mcp-Method` and `Mcp-Name` headers a 2026-07-28 request carries, " +
						"set from the body (any a client sent are replaced, or removed where the body has no name), so that Kong " +
						"plugins running after mcp-relay (rate-limiting with limit_by header, logging plugins, request-termination) " +
						"see the method and tool. At most one PDK call per request, none when the headers are already right.",
				},
				{
					name: "check_method_headers", typ: kBoolean, required: true, def: true,
					doc: "Whether a 2026-07-28 request whose `Mcp-Method` or `Mcp-Name` header disagrees with its body is answered " +
						"400 (code -32020), so that Kong routes, ACLs and rate limits keyed on those headers cannot be fooled. " +
						"Checking reads every such request's body (one PDK call); turn it off only when nothing in Kong keys on " +
						"those headers (the MCP server must check them itself).",
				},
			},
		},
		toolsField(),
		accessRulesField("prompts", "prompt names", "prompts/get", "prompts/list"),
		accessRulesField("resources", "resource URIs", "resources/read and resources/subscribe", "resources/list"),
		logField,
		metricsField,
		originField,
		{
			name: "session", typ: kRecord, required: true,
			doc: "Pinning of stateful legacy MCP sessions to the upstream replica that created them.",
			fields: []*field{
				{
					name: "store", typ: kString, required: true, def: "memory",
					oneOf: []string{"memory", "redis", "off"},
					doc: "Where session records live: `memory` (this Kong node only), `redis` (shared by every Kong node) " +
						"or `off` (no pinning).",
				},
				{
					name: "ttl", typ: kInteger, required: true, def: int(session.DefaultTTL / time.Second), between: rng(1, 604800),
					doc: "Seconds of inactivity after which a session record expires.",
				},
				{
					name: "learn_wait_ms", typ: kInteger, required: true, def: 250, between: rng(0, 5000),
					doc: "Milliseconds a request naming a not-yet-known session waits for its record, where a record may be " +
						"written after the client has its initialize answer: with the `redis` store (another node may learn its " +
						"sessions in Kong's Log phase) or when mcp-relay runs with -log-phase. Otherwise sessions are recorded " +
						"before the answer leaves Kong, and no request waits.",
				},
				{
					name: "unknown", typ: kString, required: true, def: "reject",
					oneOf: []string{"reject", "pass"},
					doc: "What happens to a request naming an unknown, lost or ended session: `reject` answers 404 " +
						"so that the client initializes a new session, `pass` proxies it to any replica.",
				},
				{
					name: "bind_consumer", typ: kBoolean, required: true, def: true,
					doc: "Whether only the consumer that created a session may use it; " +
						"requests of other consumers are answered as if the session did not exist.",
				},
				{
					name: "max_sessions", typ: kInteger, required: true, def: session.DefaultMaxSessions, between: rng(1, 100000000),
					doc: "Most session records the memory store keeps on this Kong node; beyond it, records not used lately are evicted first (second-chance, close to least recently used).",
				},
				{
					name: "max_id_length", typ: kInteger, required: true, def: 256, between: rng(16, 1024),
					doc: "Longest Mcp-Session-Id accepted, in bytes; longer ids are answered with 400.",
				},
				{
					name: "store_error", typ: kString, required: true, def: "pass",
					oneOf: []string{"pass", "reject"},
					doc: "What happens when the session store fails (Redis down or slow): " +
						"`pass` proxies the request unpinned, `reject` answers 503 with an error envelope.",
				},
				{
					name: "replica_probe_ms", typ: kInteger, required: true, def: 500, between: rng(0, 60000),
					doc: "Milliseconds: the plugin keeps one idle TCP connection to each replica sessions are pinned to, so " +
						"that one whose process exits or restarts on its address is noticed at once; this is the timeout of its " +
						"connects and keepalive probes, and how often a down replica is tried again. A replica that refuses a " +
						"connection, or times out twice in a row, is down: older sessions are recovered (see recover) or lost. " +
						"0 turns watching off.",
				},
				{
					name: "recover", typ: kBoolean, required: true, def: true,
					doc: "Whether a legacy session whose replica is down or restarted since (see replica_probe_ms), or that " +
						"its replica no longer knows (its 404 to a buffered request), is recovered: the plugin opens a new " +
						"upstream session by replaying the session's initialize, on a replica it knows to answer or, when it " +
						"knows none, on the one Kong's balancer chooses, and keeps the client's session id working. false " +
						"answers 404 (the client must initialize again).",
				},
				redisField,
			},
		},
	},
}

// DefaultAuthMessage is the default JSON-RPC message of auth errors. It says
// what failed without the word "Unauthorized", which mcp-remote reads as an
// OAuth challenge (its bundle: error.message.includes("Unauthorized")), and
// without "404", "405", "Not Found" or "Method Not Allowed", which it reads
// as a reason to switch transports.
const DefaultAuthMessage = "Authentication failed: missing or invalid credentials"

// originField is the gateway's check of the Origin header, which the MCP
// specification asks servers to make against DNS rebinding.
var originField = &field{
	name: "origin", typ: kRecord, required: true,
	doc: "Which browser origins may reach the MCP servers behind the route (DNS-rebinding protection).",
	fields: []*field{
		{
			name: "allow", typ: kSet,
			elements: &field{typ: kString, required: true, noControl: true},
			doc: "Origins allowed to send requests, written as browsers send them (`https://app.example.com`, " +
				"`http://localhost:6274`; compared without regard to case, a trailing `/` ignored). A request with " +
				"any other `Origin` gets a 403 envelope (reason `origin_forbidden`) and never reaches the server; " +
				"`null` matches the `Origin: null` of sandboxed pages and files only when listed. Requests without " +
				"`Origin` pass: clients other than browsers send none. Unset or empty: Origin is not checked.",
		},
	},
}

// redisField follows the names of Kong's own Redis settings
// (kong/tools/redis/schema.lua, and Kong Enterprise's sentinel_* and
// cluster_*), plus key_prefix.
var redisField = &field{
	name: "redis", typ: kRecord, required: true,
	doc: "Redis connection used when session.store is `redis`. The names follow Kong's own Redis settings.",
	fields: []*field{
		{
			name: "host", typ: kString, required: true, def: "127.0.0.1",
			doc: "Redis host name or IP address (not used when cluster_nodes is set).",
		},
		{
			name: "port", typ: kInteger, required: true, def: session.DefaultRedisPort, between: rng(1, 65535),
			doc: "Redis port (not used when cluster_nodes is set).",
		},
		{
			name: "username", typ: kString, referenceable: true,
			doc: "Redis ACL user name (Redis 6 and later); may be a Kong vault reference. Unset: no ACL authentication.",
		},
		{
			name: "password", typ: kString, allowEmpty: true, referenceable: true, encrypted: true,
			doc: "Redis password; may be a Kong vault reference. Unset: no AUTH command is sent. Never logged.",
		},
		{
			name: "database", typ: kInteger, required: true, def: 0, between: rng(0, maxInt32),
			doc: "Redis database number (Redis Cluster only has 0).",
		},
		{
			name: "ssl", typ: kBoolean, required: true, def: false,
			doc: "Whether to connect to Redis over TLS.",
		},
		{
			name: "ssl_verify", typ: kBoolean, required: true, def: false,
			doc: "Whether to verify the Redis server's TLS certificate.",
		},
		{
			name: "server_name", typ: kString,
			doc: "Server name sent in the TLS handshake (SNI) and checked against the certificate. Unset: the host.",
		},
		{
			name: "timeout", typ: kInteger, required: true, def: int(session.DefaultRedisTimeout / time.Millisecond), between: rng(1, maxInt32),
			doc: "Timeout of connecting to Redis and of each Redis command, in milliseconds.",
		},
		{
			name: "sentinel_master", typ: kString,
			doc: "Name of the Sentinel master. Set it together with sentinel_nodes to find Redis through Sentinel.",
		},
		{
			name: "sentinel_username", typ: kString, referenceable: true,
			doc: "User name for the Sentinel nodes (Redis 6 and later); may be a Kong vault reference.",
		},
		{
			name: "sentinel_password", typ: kString, allowEmpty: true, referenceable: true, encrypted: true,
			doc: "Password for the Sentinel nodes; may be a Kong vault reference. Never logged.",
		},
		{
			name: "sentinel_nodes", typ: kArray,
			doc: "Sentinel nodes asked for the master. Set it together with sentinel_master.",
			elements: &field{typ: kRecord, required: true, fields: []*field{
				{name: "host", typ: kString, required: true, doc: "Sentinel node host name or IP address."},
				{name: "port", typ: kInteger, required: true, def: session.DefaultSentinelPort, between: rng(1, 65535), doc: "Sentinel node port."},
			}},
		},
		{
			name: "cluster_nodes", typ: kArray,
			doc: "Redis Cluster nodes to discover the cluster from. Cannot be combined with Sentinel settings.",
			elements: &field{typ: kRecord, required: true, fields: []*field{
				{name: "ip", typ: kString, required: true, doc: "Cluster node IP address or host name."},
				{name: "port", typ: kInteger, required: true, def: session.DefaultRedisPort, between: rng(1, 65535), doc: "Cluster node port."},
			}},
		},
		{
			name: "key_prefix", typ: kString, required: true, def: "mcp-relay:",
			doc: "Prefix of every key mcp-relay writes, so that several deployments can share one Redis database.",
		},
	},
	checks: []check{
		{mutuallyRequired: []string{"sentinel_master", "sentinel_nodes"}},
		{exclusiveSets: &[2][]string{
			{"cluster_nodes"},
			{"sentinel_master", "sentinel_username", "sentinel_password", "sentinel_nodes"},
		}},
		{whenSet: &condition{ifSet: "cluster_nodes", then: "database", equals: 0, why: "Redis Cluster has only database 0"}},
	},
}

func init() {
	bind(root, reflect.TypeFor[Config]())
}

// bind records, for every record member, the index of the Go struct field
// with the same JSON name. A mismatch is a programming error caught by every
// test run (see TestFieldTableMatchesGoTypes for the detailed report).
func bind(f *field, t reflect.Type) {
	switch f.typ {
	case kRecord:
		for _, sub := range f.fields {
			sf, ok := structField(t, sub.name)
			if !ok {
				panic(fmt.Sprintf("schema: %s has no Go field with json name %q", t, sub.name))
			}
			sub.index = sf.Index
			bind(sub, sf.Type)
		}
	case kArray, kSet:
		bind(f.elements, t.Elem())
	}
}

// structField finds the field of struct type t whose json tag names name.
func structField(t reflect.Type, name string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		if jsonName(sf) == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

func jsonName(sf reflect.StructField) string {
	tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return tag
}
