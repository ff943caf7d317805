package schema

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// What the simulated Kong does with a case's config, when it differs from Go.
const (
	kongSame    = ""        // Kong accepts exactly when Parse does
	kongAccepts = "accepts" // a rule only the plugin checks
	kongRejects = "rejects" // Kong is stricter (null or "" for a value, unknown fields)
	kongSkip    = "skip"    // not a config Kong could hold (not an object)
)

type parseCase struct {
	name   string
	config string
	// want adjusts Defaults() to the expected result (valid configs).
	want func(c *Config)
	// wantErr is the exact error (invalid configs); a trailing "*" matches a prefix.
	wantErr string
	kong    string
}

var parseCases = []parseCase{
	// Valid.
	{name: "empty object", config: `{}`, want: func(*Config) {}},
	{name: "null", config: `null`, want: func(*Config) {}, kong: kongSkip},
	{name: "kong keys ignored", config: `{"__key__":"plugins:x","__seq__":1,"__plugin_id__":"id"}`, want: func(*Config) {}, kong: kongRejects},
	{name: "unknown nested field ignored", config: `{"envelope":{"colour":"red"},"future":{"a":[1]}}`, want: func(*Config) {}, kong: kongRejects},
	{name: "null record means defaults", config: `{"session":null}`, want: func(*Config) {}, kong: kongRejects},
	{name: "null value means default", config: `{"session":{"ttl":null,"store":null}}`, want: func(*Config) {}, kong: kongRejects},
	{name: "null optional string", config: `{"auth":{"anonymous":null}}`, want: func(*Config) {}},
	{name: "empty optional string is unset", config: `{"auth":{"anonymous":""}}`, want: func(*Config) {}, kong: kongRejects},
	{name: "empty password", config: `{"session":{"redis":{"password":""}}}`, want: func(*Config) {}},
	{
		name: "every field",
		config: `{"auth":{"anonymous":"anon","www_authenticate":"Bearer realm=\"x\""},
			"envelope":{"status":"keep","auth_code":-32002,"auth_message":"Nope","modern_auth_code":401,"max_body_bytes":1024},
			"upstream":{"rewrite_statuses":[500],"buffer_methods":["initialize"],"host_header":"mcp.example.com","check_method_headers":false},
			"session":{"store":"redis","ttl":60,"learn_wait_ms":0,"unknown":"pass","bind_consumer":false,
				"max_sessions":1,"max_id_length":16,"store_error":"reject","replica_probe_ms":0,"recover":false,
				"redis":{"host":"redis.local","port":6380,"username":"u","password":"p","database":15,"ssl":true,
					"ssl_verify":true,"server_name":"redis.example.com","timeout":1,
					"sentinel_master":"m","sentinel_username":"su","sentinel_password":"sp",
					"sentinel_nodes":[{"host":"s1","port":26380},{"host":"s2"}],"key_prefix":"k:"}}}`,
		want: func(c *Config) {
			c.Auth = Auth{Anonymous: "anon", WWWAuthenticate: `Bearer realm="x"`}
			c.Envelope = Envelope{Status: "keep", AuthCode: -32002, AuthMessage: "Nope", ModernAuthCode: 401, MaxBodyBytes: 1024}
			c.Upstream = Upstream{RewriteStatuses: []int{500}, BufferMethods: []string{"initialize"}, HostHeader: "mcp.example.com"}
			c.Session = Session{Store: "redis", TTL: 60, LearnWaitMS: 0, Unknown: "pass", BindConsumer: false,
				MaxSessions: 1, MaxIDLength: 16, StoreError: "reject",
				Redis: Redis{Host: "redis.local", Port: 6380, Username: "u", Password: "p", Database: 15, SSL: true,
					SSLVerify: true, ServerName: "redis.example.com", Timeout: 1,
					SentinelMaster: "m", SentinelUsername: "su", SentinelPassword: "sp",
					SentinelNodes: []HostPort{{"s1", 26380}, {"s2", 26379}}, KeyPrefix: "k:"}}
		},
	},
	{
		name:   "cluster nodes get the default port",
		config: `{"session":{"store":"redis","redis":{"cluster_nodes":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2","port":7000}]}}}`,
		want: func(c *Config) {
			c.Session.Store = "redis"
			c.Session.Redis.ClusterNodes = []IPPort{{"10.0.0.1", 6379}, {"10.0.0.2", 7000}}
		},
	},
	{name: "integer written as a float", config: `{"session":{"ttl":3600.0,"max_sessions":1e6}}`, want: func(*Config) {}},
	{name: "negative zero", config: `{"session":{"learn_wait_ms":-0}}`, want: func(c *Config) { c.Session.LearnWaitMS = 0 }},
	{name: "set duplicates dropped", config: `{"upstream":{"rewrite_statuses":[502,401,502],"buffer_methods":["ping","ping"]}}`,
		want: func(c *Config) {
			c.Upstream.RewriteStatuses = []int{502, 401}
			c.Upstream.BufferMethods = []string{"ping"}
		}},
	{name: "empty lists turn features off", config: `{"upstream":{"rewrite_statuses":[],"buffer_methods":[]}}`,
		want: func(c *Config) {
			c.Upstream.RewriteStatuses = []int{}
			c.Upstream.BufferMethods = []string{}
		}},
	{name: "empty node lists are unset", config: `{"session":{"redis":{"sentinel_nodes":[],"cluster_nodes":[]}}}`,
		want: func(c *Config) {
			c.Session.Redis.SentinelNodes = []HostPort{}
			c.Session.Redis.ClusterNodes = []IPPort{}
		}},
	{name: "null sentinel master", config: `{"session":{"redis":{"sentinel_master":null}}}`, want: func(*Config) {}},
	{name: "modern code below the reserved range", config: `{"envelope":{"modern_auth_code":-32769}}`, want: func(c *Config) { c.Envelope.ModernAuthCode = -32769 }},
	{name: "modern code above the reserved range", config: `{"envelope":{"modern_auth_code":-31999}}`, want: func(c *Config) { c.Envelope.ModernAuthCode = -31999 }},
	{name: "legacy code may be reserved", config: `{"envelope":{"auth_code":-32600}}`, want: func(c *Config) { c.Envelope.AuthCode = -32600 }},

	// Invalid: one message each, naming the path and what is allowed.
	{name: "status", config: `{"envelope":{"status":"301"}}`, wantErr: `config.envelope.status: must be one of "auto", "keep", "200" (got "301")`},
	{name: "status as a number", config: `{"envelope":{"status":200}}`, wantErr: `config.envelope.status: must be a string (got 200)`},
	{name: "auth_code beyond int32", config: `{"envelope":{"auth_code":2147483648}}`, wantErr: `config.envelope.auth_code: must be between -2147483648 and 2147483647 (got 2147483648)`},
	{name: "auth_code beyond int64", config: `{"envelope":{"auth_code":1e300}}`, wantErr: `config.envelope.auth_code: must be an integer between -2147483648 and 2147483647 (got 1e300)`},
	{name: "auth_message empty", config: `{"envelope":{"auth_message":""}}`, wantErr: `config.envelope.auth_message: must not be empty`},
	{name: "modern code reserved by the 2026 spec", config: `{"envelope":{"modern_auth_code":-32001}}`, wantErr: `config.envelope.modern_auth_code: must be outside -32768..-32000 (got -32001)`},
	{name: "modern code low edge", config: `{"envelope":{"modern_auth_code":-32768}}`, wantErr: `config.envelope.modern_auth_code: must be outside -32768..-32000 (got -32768)`},
	{name: "modern code high edge", config: `{"envelope":{"modern_auth_code":-32000}}`, wantErr: `config.envelope.modern_auth_code: must be outside -32768..-32000 (got -32000)`},
	{name: "max_body_bytes small", config: `{"envelope":{"max_body_bytes":1023}}`, wantErr: `config.envelope.max_body_bytes: must be between 1024 and 67108864 (got 1023)`},
	{name: "max_body_bytes large", config: `{"envelope":{"max_body_bytes":67108865}}`, wantErr: `config.envelope.max_body_bytes: must be between 1024 and 67108864 (got 67108865)`},
	{name: "rewrite status out of range", config: `{"upstream":{"rewrite_statuses":[401,600]}}`, wantErr: `config.upstream.rewrite_statuses[1]: must be between 400 and 599 (got 600)`},
	{name: "rewrite statuses not a list", config: `{"upstream":{"rewrite_statuses":"401"}}`, wantErr: `config.upstream.rewrite_statuses: must be an array (got "401")`},
	{name: "rewrite status not a number", config: `{"upstream":{"rewrite_statuses":["x",401]}}`, wantErr: `config.upstream.rewrite_statuses[0]: must be an integer between 400 and 599 (got "x")`},
	{name: "error index counts the JSON array", config: `{"upstream":{"rewrite_statuses":[401,401,399]}}`, wantErr: `config.upstream.rewrite_statuses[2]: must be between 400 and 599 (got 399)`},
	{name: "buffer method empty", config: `{"upstream":{"buffer_methods":["","ping"]}}`, wantErr: `config.upstream.buffer_methods[0]: must not be empty`},
	{name: "buffer method null", config: `{"upstream":{"buffer_methods":[null]}}`, wantErr: `config.upstream.buffer_methods[0]: must not be null`},
	{name: "host header with CRLF", config: `{"upstream":{"host_header":"a\r\nX-Evil: 1"}}`, wantErr: `config.upstream.host_header: must not contain control characters (got "a\r\nX-Evil: 1")`},
	{name: "www_authenticate with a newline", config: `{"auth":{"www_authenticate":"Bearer\n"}}`, wantErr: `config.auth.www_authenticate: must not contain control characters (got "Bearer\n")`},
	{name: "store", config: `{"session":{"store":"disk"}}`, wantErr: `config.session.store: must be one of "memory", "redis", "off" (got "disk")`},
	{name: "ttl zero", config: `{"session":{"ttl":0}}`, wantErr: `config.session.ttl: must be between 1 and 604800 (got 0)`},
	{name: "ttl over a week", config: `{"session":{"ttl":604801}}`, wantErr: `config.session.ttl: must be between 1 and 604800 (got 604801)`},
	{name: "ttl fraction", config: `{"session":{"ttl":1.5}}`, wantErr: `config.session.ttl: must be an integer between 1 and 604800 (got 1.5)`},
	{name: "ttl as a string", config: `{"session":{"ttl":"3600"}}`, wantErr: `config.session.ttl: must be an integer between 1 and 604800 (got "3600")`},
	{name: "learn_wait_ms negative", config: `{"session":{"learn_wait_ms":-1}}`, wantErr: `config.session.learn_wait_ms: must be between 0 and 5000 (got -1)`},
	{name: "learn_wait_ms large", config: `{"session":{"learn_wait_ms":5001}}`, wantErr: `config.session.learn_wait_ms: must be between 0 and 5000 (got 5001)`},
	{name: "unknown", config: `{"session":{"unknown":"drop"}}`, wantErr: `config.session.unknown: must be one of "reject", "pass" (got "drop")`},
	{name: "bind_consumer as a string", config: `{"session":{"bind_consumer":"yes"}}`, wantErr: `config.session.bind_consumer: must be true or false (got "yes")`},
	{name: "max_sessions", config: `{"session":{"max_sessions":0}}`, wantErr: `config.session.max_sessions: must be between 1 and 100000000 (got 0)`},
	{name: "max_id_length", config: `{"session":{"max_id_length":15}}`, wantErr: `config.session.max_id_length: must be between 16 and 1024 (got 15)`},
	{name: "store_error", config: `{"session":{"store_error":"fail"}}`, wantErr: `config.session.store_error: must be one of "pass", "reject" (got "fail")`},
	{name: "redis port zero", config: `{"session":{"redis":{"port":0}}}`, wantErr: `config.session.redis.port: must be between 1 and 65535 (got 0)`},
	{name: "redis port large", config: `{"session":{"redis":{"port":65536}}}`, wantErr: `config.session.redis.port: must be between 1 and 65535 (got 65536)`},
	{name: "redis database negative", config: `{"session":{"redis":{"database":-1}}}`, wantErr: `config.session.redis.database: must be between 0 and 2147483647 (got -1)`},
	{name: "redis timeout zero", config: `{"session":{"redis":{"timeout":0}}}`, wantErr: `config.session.redis.timeout: must be between 1 and 2147483647 (got 0)`},
	{name: "redis host empty", config: `{"session":{"redis":{"host":""}}}`, wantErr: `config.session.redis.host: must not be empty`},
	{name: "redis ssl as a string", config: `{"session":{"redis":{"ssl":"true"}}}`, wantErr: `config.session.redis.ssl: must be true or false (got "true")`},
	{name: "key_prefix empty", config: `{"session":{"redis":{"key_prefix":""}}}`, wantErr: `config.session.redis.key_prefix: must not be empty`},
	{name: "sentinel master without nodes", config: `{"session":{"store":"redis","redis":{"sentinel_master":"m"}}}`, wantErr: `config.session.redis.sentinel_nodes: must be set when sentinel_master is set`},
	{name: "sentinel master with empty nodes", config: `{"session":{"store":"redis","redis":{"sentinel_master":"m","sentinel_nodes":[]}}}`, wantErr: `config.session.redis.sentinel_nodes: must be set when sentinel_master is set`},
	{name: "sentinel nodes without master", config: `{"session":{"redis":{"sentinel_nodes":[{"host":"s1"}]}}}`, wantErr: `config.session.redis.sentinel_master: must be set when sentinel_nodes is set`},
	{name: "cluster with sentinel", config: `{"session":{"redis":{"sentinel_master":"m","sentinel_nodes":[{"host":"s1"}],"cluster_nodes":[{"ip":"c1"}]}}}`, wantErr: `config.session.redis.cluster_nodes: cannot be combined with sentinel_master and sentinel_nodes`},
	{name: "cluster with sentinel password", config: `{"session":{"redis":{"sentinel_password":"x","cluster_nodes":[{"ip":"c1"}]}}}`, wantErr: `config.session.redis.cluster_nodes: cannot be combined with sentinel_password`},
	{name: "cluster with a database", config: `{"session":{"redis":{"database":1,"cluster_nodes":[{"ip":"c1"}]}}}`, wantErr: `config.session.redis.database: must be 0 when cluster_nodes is set: Redis Cluster has only database 0 (got 1)`},
	{name: "sentinel node without host", config: `{"session":{"redis":{"sentinel_master":"m","sentinel_nodes":[{"port":26379}]}}}`, wantErr: `config.session.redis.sentinel_nodes[0].host: must not be empty`},
	{name: "cluster node port fraction", config: `{"session":{"redis":{"cluster_nodes":[{"ip":"c1","port":1.5}]}}}`, wantErr: `config.session.redis.cluster_nodes[0].port: must be an integer between 1 and 65535 (got 1.5)`},
	{name: "cluster node not an object", config: `{"session":{"redis":{"cluster_nodes":["c1:6379"]}}}`, wantErr: `config.session.redis.cluster_nodes[0]: must be an object (got "c1:6379")`},
	{name: "record not an object", config: `{"session":"x"}`, wantErr: `config.session: must be an object (got "x")`},
	{name: "long value is cut", config: `{"session":{"store":"` + strings.Repeat("a", 100) + `"}}`, wantErr: `config.session.store: must be one of "memory", "redis", "off" (got "` + strings.Repeat("a", 100) + `")`},
	{name: "long raw value is cut", config: `{"session":{"ttl":"` + strings.Repeat("a", 100) + `"}}`, wantErr: `config.session.ttl: must be an integer between 1 and 604800 (got "` + strings.Repeat("a", 39) + `...)`},
	{name: "every problem at once", config: `{"envelope":{"status":"301"},"session":{"ttl":0,"unknown":5}}`,
		wantErr: `config.envelope.status: must be one of "auto", "keep", "200" (got "301"); config.session.ttl: must be between 1 and 604800 (got 0); config.session.unknown: must be a string (got 5)`},
	{name: "not an object", config: `[]`, wantErr: `config: must be an object (got [])`, kong: kongAccepts}, // Kong decodes [] as {}
	{name: "invalid JSON", config: `{"session":`, wantErr: `config: is not valid JSON: *`, kong: kongSkip},
	{name: "nothing", config: ``, wantErr: `config: must be a JSON value (got nothing)`, kong: kongSkip},
}

func TestParse(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.config))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse succeeded, want error %q", tt.wantErr)
				}
				if !matches(err.Error(), tt.wantErr) {
					t.Errorf("error\n got %s\nwant %s", err, tt.wantErr)
				}
				if !reflect.DeepEqual(got, Config{}) {
					t.Errorf("Parse returned a config with its error: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// TestKongAgrees runs every case through the simulated Kong (defaults filled
// in from the emitted Kong schema, then validated by its rules) and checks
// that Kong accepts and rejects the same configs as Parse, except where a
// case says otherwise.
func TestKongAgrees(t *testing.T) {
	for _, tt := range parseCases {
		if tt.kong == kongSkip {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			sent, kongErrs := kongSends(t, tt.config)
			kongOK := len(kongErrs) == 0
			goOK := tt.wantErr == ""
			want := goOK
			switch tt.kong {
			case kongAccepts:
				want = true
			case kongRejects:
				want = false
			}
			if kongOK != want {
				t.Errorf("Kong accepts = %v, want %v (errors: %v)", kongOK, want, kongErrs)
			}
			// Whatever Kong accepts and sends, the plugin must parse the same
			// way as the user's config (Kong only adds defaults and nulls).
			if kongOK && goOK {
				fromKong, err := Parse(sent)
				if err != nil {
					t.Fatalf("Parse(what Kong sends): %v\n%s", err, sent)
				}
				if direct := mustParse(t, tt.config); !reflect.DeepEqual(fromKong, direct) {
					t.Errorf("Parse(Kong's JSON) =\n%+v\nParse(user's JSON) =\n%+v", fromKong, direct)
				}
			}
		})
	}
}

func matches(got, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(got, prefix)
	}
	return got == want
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"nil lists", func(c *Config) { c.Upstream.RewriteStatuses, c.Upstream.BufferMethods = nil, nil }, ""},
		{"status", func(c *Config) { c.Envelope.Status = "301" }, `config.envelope.status: must be one of "auto", "keep", "200" (got "301")`},
		{"empty status", func(c *Config) { c.Envelope.Status = "" }, `config.envelope.status: must not be empty`},
		{"redis port", func(c *Config) { c.Session.Redis.Port = 70000 }, `config.session.redis.port: must be between 1 and 65535 (got 70000)`},
		{"node port", func(c *Config) {
			c.Session.Redis.SentinelMaster = "m"
			c.Session.Redis.SentinelNodes = []HostPort{{Host: "s"}}
		}, `config.session.redis.sentinel_nodes[0].port: must be between 1 and 65535 (got 0)`},
		{"approved digest", func(c *Config) {
			c.Tools.Pin.Approved = []ApprovedTool{{Name: "echo", Digest: "sha256:" + strings.Repeat("a", 64)}, {Name: "x", Digest: "sha256:abc"}}
		}, "config.tools.pin.approved[1].digest: must be `sha256:` followed by 64 hexadecimal digits (got \"sha256:abc\")"},
		{"approved name", func(c *Config) {
			c.Tools.Pin.Approved = []ApprovedTool{{Digest: "sha256:" + strings.Repeat("A", 64)}}
		}, `config.tools.pin.approved[0].name: must not be empty`},
		{"pin mode", func(c *Config) { c.Tools.Pin.Mode = "on" }, `config.tools.pin.mode: must be one of "off", "detect", "enforce" (got "on")`},
		{"zero config", func(c *Config) { *c = Config{} }, `config.envelope.status: must not be empty; ` +
			`config.envelope.auth_message: must not be empty; ` +
			`config.envelope.max_body_bytes: must be between 1024 and 67108864 (got 0); ` +
			`config.tools.pin.mode: must not be empty; ` +
			`config.tools.pin.hold_ttl: must be between 60 and 2592000 (got 0); ` +
			`config.session.store: must not be empty; ` +
			`config.session.ttl: must be between 1 and 604800 (got 0); ` +
			`config.session.unknown: must not be empty; ` +
			`config.session.max_sessions: must be between 1 and 100000000 (got 0); ` +
			`config.session.max_id_length: must be between 16 and 1024 (got 0); ` +
			`config.session.store_error: must not be empty; ` +
			`config.session.redis.host: must not be empty; ` +
			`config.session.redis.port: must be between 1 and 65535 (got 0); ` +
			`config.session.redis.timeout: must be between 1 and 2147483647 (got 0); ` +
			`config.session.redis.key_prefix: must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Validate =\n%v\nwant\n%s", err, tt.wantErr)
			}
		})
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse([]byte(`{"session":{"redis":{"port":0}},"envelope":{"status":"x"}}`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "config.envelope.status" {
		t.Fatalf("errors.As(%v) = %+v", err, fe)
	}
	var all Errors
	if !errors.As(err, &all) || len(all) != 2 || all[1].Path != "config.session.redis.port" {
		t.Fatalf("errors.As(Errors) = %v", all)
	}
	if Defaults().Validate() != nil {
		t.Fatal("Validate of the defaults returned a non-nil error")
	}
}

func TestRedisNeverPrintsPasswords(t *testing.T) {
	c := Defaults()
	c.Session.Redis.Password = "s3cret-pass"
	c.Session.Redis.SentinelPassword = "s3cret-sentinel"
	c.Session.Redis.SentinelMaster = "m"
	c.Session.Redis.SentinelNodes = []HostPort{{"s1", 26379}}
	r := c.Session.Redis
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for name, v := range map[string]any{"Config": c, "*Config": &c, "Session": c.Session, "Redis": r, "*Redis": &r} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, "s3cret") {
				t.Errorf("Sprintf(%q, %s) shows a password: %s", format, name, out)
			}
			if !strings.Contains(out, "[redacted]") || !strings.Contains(out, "127.0.0.1") {
				t.Errorf("Sprintf(%q, %s) = %s, want the settings with [redacted] passwords", format, name, out)
			}
		}
	}
	if got := fmt.Sprintf("%#v", r); !strings.HasPrefix(got, "schema.Redis{") {
		t.Errorf("GoString = %s", got)
	}
	if got := Defaults().Session.Redis.String(); strings.Contains(got, "redacted") {
		t.Errorf("an unset password shows as redacted: %s", got)
	}
}

func TestShortJSON(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"short", `"abc"`, `"abc"`},
		{"at the limit", `"` + strings.Repeat("a", 38) + `"`, `"` + strings.Repeat("a", 38) + `"`},
		{"cut", `"` + strings.Repeat("a", 50) + `"`, `"` + strings.Repeat("a", 39) + `...`},
		{"cut before a split rune", `"` + strings.Repeat("a", 38) + `€"`, `"` + strings.Repeat("a", 38) + `...`},
		{"keeps a whole rune", `"` + strings.Repeat("a", 36) + `€b"`, `"` + strings.Repeat("a", 36) + `€...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shortJSON([]byte(tt.in)); got != tt.want {
				t.Errorf("shortJSON(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
