// Package bad holds the handlers of upstreams that misbehave the way real MCP
// backends have: one that rejects every request with a bare HTTP 401, and one
// that accepts requests and never answers. test/peers/cmd/badserver serves
// them as a process; tests may also mount them in-process.
package bad

import (
	"fmt"
	"io"
	"net/http"
)

// Modes.
const (
	// ModeBare401 answers every request with 401 and Bare401Body.
	ModeBare401 = "bare401"
	// ModeSilent reads every request and never answers.
	ModeSilent = "silent"
)

// Bare401Body is the body of every bare401 answer.
const Bare401Body = `{"error":"Invalid or missing access key"}`

// Handler returns the handler for mode.
func Handler(mode string) (http.Handler, error) {
	switch mode {
	case ModeBare401:
		return http.HandlerFunc(bare401), nil
	case ModeSilent:
		return http.HandlerFunc(silent), nil
	default:
		return nil, fmt.Errorf("unknown mode %q (want %s or %s)", mode, ModeBare401, ModeSilent)
	}
}

func bare401(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, Bare401Body+"\n")
}

// silent reads the request and then blocks until the client disconnects or
// the server closes the connection; either cancels the request's context, so
// no goroutine outlives its connection.
func silent(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}
