package envelope_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/mcp-relay/mcp-relay/envelope"
)

// benchBodies are the bodies both BenchmarkParse and its encoding/json baseline read.
var benchBodies = []struct {
	name string
	body []byte
}{
	{"single-small", []byte(toolsCall)},
	{"single-8KiB", bigCall(8 << 10)},
	{"batch-10", batch10()},
}

// bigCall is a tools/call of about n bytes, nearly all of it in arguments.
func bigCall(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/notes.md","rows":[`)
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"n":` + strconv.Itoa(i) + `,"text":"Lorem ipsum dolor sit amet, consectetur \"adipiscing\" elit","ok":true}`)
	}
	b.WriteString(`]},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":"p-42"}}}`)
	return []byte(b.String())
}

func batch10() []byte {
	parts := make([]string, 10)
	for i := range parts {
		if i%3 == 2 {
			parts[i] = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":` + strconv.Itoa(i) + `,"progress":0.5}}`
			continue
		}
		parts[i] = `{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":"tools/call","params":{"name":"echo","arguments":{"x":` + strconv.Itoa(i) + `}}}`
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

var sinkRequest envelope.Request

func BenchmarkParse(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				r := envelope.Parse(bb.body, 0)
				// Walk a batch, as the plugin does, so both readers do the same work.
				r.Elements(func(e envelope.Request) bool { sinkRequest = e; return true })
				sinkRequest = r
			}
		})
	}
}

// jsonMessage is what the encoding/json baseline reads: the same members.
type jsonMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
	} `json:"params"`
}

var (
	sinkMessage  jsonMessage
	sinkMessages []jsonMessage
)

func BenchmarkParseEncodingJSON(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				if bb.body[0] == '[' {
					var ms []jsonMessage
					if err := json.Unmarshal(bb.body, &ms); err != nil {
						b.Fatal(err)
					}
					sinkMessages = ms
					continue
				}
				var m jsonMessage
				if err := json.Unmarshal(bb.body, &m); err != nil {
					b.Fatal(err)
				}
				sinkMessage = m
			}
		})
	}
}

var sinkBytes []byte

func BenchmarkAppend(b *testing.B) {
	for _, bb := range []struct {
		name string
		body []byte
	}{{"single", []byte(toolsCall)}, {"batch-10", batch10()}} {
		r := envelope.Parse(bb.body, 0)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 8192)
			for b.Loop() {
				buf, _ = envelope.Append(buf[:0], r, errUnauthorized)
			}
			sinkBytes = buf
		})
	}
}

// jsonEnvelope is the envelope as an encoding/json baseline writes it.
type jsonEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	Error   jsonError       `json:"error"`
	ID      json.RawMessage `json:"id"`
}

type jsonError struct {
	Code    int       `json:"code"`
	Message string    `json:"message"`
	Data    *jsonData `json:"data,omitempty"`
}

type jsonData struct {
	Status          int    `json:"status,omitempty"`
	Reason          string `json:"reason,omitempty"`
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
}

func newJSONEnvelope(e envelope.Error, id string) jsonEnvelope {
	d := jsonData{e.Data.Status, e.Data.Reason, e.Data.WWWAuthenticate}
	env := jsonEnvelope{JSONRPC: "2.0", Error: jsonError{Code: e.Code, Message: e.Message, Data: &d}, ID: json.RawMessage("null")}
	if id != "" {
		env.ID = json.RawMessage(id)
	}
	return env
}

func BenchmarkAppendEncodingJSON(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			env := newJSONEnvelope(errUnauthorized, "7")
			out, err := json.Marshal(&env)
			if err != nil {
				b.Fatal(err)
			}
			sinkBytes = out
		}
	})
	b.Run("batch-10", func(b *testing.B) {
		b.ReportAllocs()
		var ms []jsonMessage
		if err := json.Unmarshal(batch10(), &ms); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			envs := make([]jsonEnvelope, 0, len(ms))
			for _, m := range ms {
				if m.ID != nil {
					envs = append(envs, newJSONEnvelope(errUnauthorized, string(m.ID)))
				}
			}
			out, err := json.Marshal(envs)
			if err != nil {
				b.Fatal(err)
			}
			sinkBytes = out
		}
	})
}

func BenchmarkMatchesHeaders(b *testing.B) {
	r := envelope.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather_forecast"}}`), 0)
	for _, h := range []struct{ name, value string }{
		{"plain", "get_weather_forecast"},
		{"base64", "=?base64?Z2V0X3dlYXRoZXJfZm9yZWNhc3Q=?="},
	} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !envelope.MatchesHeaders(r, "tools/call", h.value) {
					b.Fatal("no match")
				}
			}
		})
	}
}
