package legacy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HeaderSessionID is the header that carries a legacy MCP session id.
const HeaderSessionID = "Mcp-Session-Id"

// Stats is what a replica has seen on its MCP endpoint since it started or
// since the last reset. It is served as JSON by GET /stats.
//
// A request is misrouted when it carries an Mcp-Session-Id that this replica
// never minted. The count is kept by the replica itself, in front of the MCP
// handler, because an mcp-go replica accepts some requests it should never
// see without complaint: GET and DELETE for an unknown session get 200, and a
// ping answer gets 202.
type Stats struct {
	// Name is the replica's name (the -name flag).
	Name string `json:"name"`
	// RequestsTotal counts every request to the MCP endpoint.
	RequestsTotal int64 `json:"requests_total"`
	// RequestsByMethod counts requests by HTTP method (POST, GET, DELETE...).
	RequestsByMethod map[string]int64 `json:"requests_by_method"`
	// RequestsByRPC counts POSTs by JSON-RPC method; a client's answer to a
	// server request (elicitation, sampling) counts as "response", a batch as
	// "batch", a body that is not JSON-RPC as "invalid".
	RequestsByRPC map[string]int64 `json:"requests_by_rpc"`
	// RequestsBySession counts requests by the Mcp-Session-Id they carried
	// (requests without one are not counted here).
	RequestsBySession map[string]int64 `json:"requests_by_session"`
	// SessionsCreated counts the session ids this replica minted, read from
	// the Mcp-Session-Id header of its initialize answers.
	SessionsCreated int64 `json:"sessions_created"`
	// Sessions lists every session id this replica minted since it started
	// (a reset does not forget them: they still belong to this replica).
	Sessions []string `json:"sessions"`
	// MisroutedTotal counts requests carrying a session id this replica did
	// not mint.
	MisroutedTotal int64 `json:"misrouted_total"`
	// MisroutedByMethod splits MisroutedTotal by HTTP method.
	MisroutedByMethod map[string]int64 `json:"misrouted_by_method"`
	// MisroutedByRPC splits the misrouted POSTs by JSON-RPC method, as
	// RequestsByRPC does.
	MisroutedByRPC map[string]int64 `json:"misrouted_by_rpc"`
	// MisroutedSessions counts misrouted requests by the foreign session id
	// they carried.
	MisroutedSessions map[string]int64 `json:"misrouted_sessions"`
	// MisroutedFirst is when each foreign session id first arrived, to set
	// a misroute against what the gateway logged.
	MisroutedFirst map[string]time.Time `json:"misrouted_first"`
	// StatusCodes counts the HTTP status codes the MCP handler answered with,
	// keyed by the decimal code ("200", "404").
	StatusCodes map[string]int64 `json:"status_codes"`
	// HealthProbes counts GETs that are no MCP request and none of the
	// counts above: without a session id and without text/event-stream in
	// Accept, as Kong's active HTTP health checks send them
	// (lua-resty-healthcheck: "GET <path> HTTP/1.0" and Host only).
	HealthProbes int64 `json:"health_probes"`
}

// Misrouted returns the number of misrouted requests with the given HTTP
// method.
func (s Stats) Misrouted(method string) int64 { return s.MisroutedByMethod[method] }

// recorder keeps Stats. The minted set survives resets.
type recorder struct {
	mu     sync.Mutex
	name   string
	minted map[string]struct{}
	order  []string
	s      Stats
}

func newRecorder(name string) *recorder {
	r := &recorder{name: name, minted: make(map[string]struct{})}
	r.resetLocked()
	return r
}

func (r *recorder) resetLocked() {
	r.s = Stats{
		Name:              r.name,
		RequestsByMethod:  map[string]int64{},
		RequestsByRPC:     map[string]int64{},
		RequestsBySession: map[string]int64{},
		MisroutedByMethod: map[string]int64{},
		MisroutedByRPC:    map[string]int64{},
		MisroutedSessions: map[string]int64{},
		MisroutedFirst:    map[string]time.Time{},
		StatusCodes:       map[string]int64{},
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resetLocked()
}

func (r *recorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.s
	out.RequestsByMethod = cloneCounts(r.s.RequestsByMethod)
	out.RequestsByRPC = cloneCounts(r.s.RequestsByRPC)
	out.RequestsBySession = cloneCounts(r.s.RequestsBySession)
	out.MisroutedByMethod = cloneCounts(r.s.MisroutedByMethod)
	out.MisroutedByRPC = cloneCounts(r.s.MisroutedByRPC)
	out.MisroutedSessions = cloneCounts(r.s.MisroutedSessions)
	out.MisroutedFirst = make(map[string]time.Time, len(r.s.MisroutedFirst))
	for k, v := range r.s.MisroutedFirst {
		out.MisroutedFirst[k] = v
	}
	out.StatusCodes = cloneCounts(r.s.StatusCodes)
	out.Sessions = append([]string{}, r.order...)
	return out
}

func cloneCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// request records an incoming request before it is handled.
func (r *recorder) request(method, session, rpc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.RequestsTotal++
	r.s.RequestsByMethod[method]++
	if rpc != "" {
		r.s.RequestsByRPC[rpc]++
	}
	if session == "" {
		return
	}
	r.s.RequestsBySession[session]++
	if _, ok := r.minted[session]; ok {
		return
	}
	r.s.MisroutedTotal++
	r.s.MisroutedByMethod[method]++
	if rpc != "" {
		r.s.MisroutedByRPC[rpc]++
	}
	if r.s.MisroutedSessions[session] == 0 {
		r.s.MisroutedFirst[session] = time.Now()
	}
	r.s.MisroutedSessions[session]++
}

// answered records the status and, for a fresh session, the minted id.
func (r *recorder) answered(status int, minted string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.StatusCodes[strconv.Itoa(status)]++
	if minted == "" {
		return
	}
	if _, ok := r.minted[minted]; ok {
		return
	}
	r.minted[minted] = struct{}{}
	r.order = append(r.order, minted)
	r.s.SessionsCreated++
}

// rpcKind names a POST body for the stats: its JSON-RPC method, "response"
// for an answer to a server request, "batch", or "invalid".
func rpcKind(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return "batch"
	}
	var msg struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(trimmed, &msg); err != nil {
		return "invalid"
	}
	if msg.Method != "" {
		return msg.Method
	}
	if len(msg.ID) > 0 {
		return "response"
	}
	return "invalid"
}

// countingWriter captures the status and the minted session id while
// passing everything through, flushes included (SSE needs them).
type countingWriter struct {
	http.ResponseWriter
	rec        *recorder
	isInit     bool
	wroteHead  bool
	statusSeen int
}

func (w *countingWriter) WriteHeader(status int) {
	if !w.wroteHead {
		w.wroteHead = true
		w.statusSeen = status
		minted := ""
		if w.isInit && status >= 200 && status < 300 {
			minted = w.Header().Get(HeaderSessionID)
		}
		w.rec.answered(status, minted)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher; mcp-go streams SSE only through a Flusher.
func (w *countingWriter) Flush() {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware counts every request before next handles it.
func (r *recorder) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rpc := ""
		if req.Method == http.MethodPost && req.Body != nil {
			body, err := io.ReadAll(req.Body)
			_ = req.Body.Close()
			if err != nil {
				http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			rpc = rpcKind(body)
		}
		session := strings.TrimSpace(req.Header.Get(HeaderSessionID))
		if req.Method == http.MethodGet && session == "" && !strings.Contains(req.Header.Get("Accept"), "text/event-stream") {
			r.mu.Lock()
			r.s.HealthProbes++
			r.mu.Unlock()
			next.ServeHTTP(w, req)
			return
		}
		r.request(req.Method, session, rpc)
		cw := &countingWriter{ResponseWriter: w, rec: r, isInit: rpc == "initialize"}
		next.ServeHTTP(cw, req)
		if !cw.wroteHead {
			// The handler wrote nothing: net/http answers 200.
			r.answered(http.StatusOK, "")
		}
	})
}
