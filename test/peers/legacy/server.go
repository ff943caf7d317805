// Package legacy is a stateful MCP server of the legacy protocol era (up to
// 2025-11-25) built with mcp-go, used as an upstream replica in mcp-relay's
// tests. It runs in-process (Server is an http.Handler) or as its own process
// (test/peers/cmd/legacyserver).
//
// Every replica counts, in front of the MCP handler, the requests that carry
// a session id it never minted: see Stats.
//
// Endpoints on one listener:
//
//	/mcp              the MCP endpoint (Streamable HTTP, stateful sessions)
//	GET  /stats       Stats as JSON
//	POST /stats/reset zero the counters (minted session ids are kept)
//	GET  /healthz     200 "ok"
//	POST /tools/{name}/description
//	                  the request body becomes the tool's description from
//	                  the next tools/list on (a server changing a definition
//	                  at runtime); 204, or 404 for an unknown tool
//
// Tools:
//
//	whoami                      the replica's name
//	echo {text}                 text
//	progress {steps, delay_ms, settle_ms}
//	                            `steps` notifications/progress for the call's
//	                            progressToken (none without one), then "done <steps>"
//	ask {message, timeout_ms}   elicitation/create with the form {"answer": string};
//	                            returns the answer, "declined" or "cancelled"
//	sample {prompt, timeout_ms} sampling/createMessage; returns the answer's text
//	sleep {ms}                  waits, then "slept <ms>"
//
// Where mcp-go v1.2.1 sends what, which a gateway must stream and pin:
//
//   - elicitation/create goes on the tools/call POST's SSE stream;
//   - sampling/createMessage goes only on the session's GET stream: without
//     one, sample waits until timeout_ms or the call ends;
//   - progress notifications go on the POST's SSE stream, but while the
//     client holds the GET stream both streams read the session's one
//     notification channel, so about half of them travel on the GET stream
//     (in order relative to the result only because progress waits settle_ms
//     before returning);
//   - the client's answers to elicitation and sampling are new POSTs with the
//     session id, which must reach this replica: a replica that did not mint
//     the session answers 404, and the tool waits until timeout_ms or until
//     the client gives up on the call.
package legacy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Path is the MCP endpoint's path.
const Path = "/mcp"

// Options configure a Server.
type Options struct {
	// Name is the replica's name, returned by the whoami tool and in Stats.
	Name string
	// Logger receives mcp-go's transport logs. Nil discards them.
	Logger *slog.Logger
	// AllowedHosts, when set, is a DNS-rebinding guard as MCP SDKs have one:
	// a request to /mcp whose Host is not listed exactly gets 403 with a
	// JSON-RPC error naming the Host.
	AllowedHosts []string
}

// Server is one legacy MCP replica: an http.Handler serving /mcp, /stats,
// /stats/reset and /healthz.
type Server struct {
	name       string
	mcp        *server.MCPServer
	streamable *server.StreamableHTTPServer
	rec        *recorder
	mux        *http.ServeMux
}

// New builds a replica. Sessions are stateful (server.WithStateful), the
// transport serves only the legacy protocol versions, and the DNS-rebinding
// guard is off so that a gateway may forward any Host header over loopback.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{name: opts.Name, rec: newRecorder(opts.Name)}
	s.mcp = server.NewMCPServer(
		"mcp-relay-legacy-replica", "1.0.0",
		server.WithToolCapabilities(false),
		server.WithElicitation(),
		server.WithLogging(),
		server.WithRecovery(),
	)
	s.mcp.EnableSampling()
	s.addTools()
	s.streamable = server.NewStreamableHTTPServer(s.mcp,
		server.WithStateful(true),
		server.WithStreamableHTTPProtocolVersions(mcp.LegacyProtocolVersions()...),
		server.WithDisableLocalhostProtection(true),
		server.WithStreamableHTTPLogger(logger),
	)
	s.mux = http.NewServeMux()
	s.mux.Handle(Path, s.rec.middleware(hostGuard(opts.AllowedHosts, s.streamable)))
	s.mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	s.mux.HandleFunc("POST /stats/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("POST /tools/{name}/description", func(w http.ResponseWriter, r *http.Request) {
		desc, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !s.SetToolDescription(r.PathValue("name"), string(desc)) {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return s
}

// SetToolDescription replaces the description of the named tool, keeping
// its handler and the rest of its definition, and reports whether the tool
// exists. Clients see it from their next tools/list on; no
// notifications/tools/list_changed is sent (the replica declares
// listChanged false), as with a server that changes under its clients.
func (s *Server) SetToolDescription(name, description string) bool {
	t := s.mcp.GetTool(name)
	if t == nil {
		return false
	}
	def := t.Tool
	def.Description = description
	s.mcp.AddTool(def, t.Handler)
	return true
}

// Name returns the replica's name.
func (s *Server) Name() string { return s.name }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { return s.rec.snapshot() }

// ResetStats zeroes the counters. The minted session ids are kept, so that
// requests of sessions created before the reset do not count as misrouted.
func (s *Server) ResetStats() { s.rec.reset() }

// CloseSessions ends every open GET stream and forgets every session, so
// that an http.Server holding this handler can shut down.
func (s *Server) CloseSessions(ctx context.Context) { s.streamable.CloseSessions(ctx) }

// hostGuard rejects requests whose Host is not in allowed (none: no check).
func hostGuard(allowed []string, next http.Handler) http.Handler {
	if len(allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range allowed {
			if r.Host == h {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		msg, _ := json.Marshal("Invalid Host header: " + r.Host)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","error":{"code":-32000,"message":`+string(msg)+`},"id":null}`)
	})
}
