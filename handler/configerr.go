package handler

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/mcp-relay/mcp-relay/kong"
	"github.com/mcp-relay/mcp-relay/schema"
)

// invalidConfig is an instance whose configuration the plugin refused.
// Kong checks every rule its schema language can express before it sends a
// configuration (see schema.KongSchema); what reaches this point passed
// Kong, for example a configuration stored by an older plugin version
// (Kong validates plugin configuration when it is written, not when it is
// read). Failing the instance start would leave Kong answering every
// request with its bare 500 and the reason at info level, twice per
// request; instead the instance starts, answers every request 500 with a
// reason naming the fields, and Kong's log gets the error once.
type invalidConfig struct {
	fields  string // the paths of the invalid settings, for clients
	message string // the envelope's message
}

// startInvalid records err as the instance's configuration problem and
// logs it once (the log line reaches Kong's log at error through the next
// request, before its answer; its kind holds the error, so a different
// problem is never held back by this one).
func (p *Plugin) startInvalid(err error) error {
	var paths []string
	var fe *schema.FieldError
	for _, e := range flatten(err) {
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	if len(paths) == 0 {
		paths = []string{"config"}
	}
	fields := strings.Join(paths, ", ")
	p.invalid = &invalidConfig{
		fields:  fields,
		message: "mcp-relay configuration invalid: " + fields,
	}
	logger.Error("invalid configuration: every request of this plugin instance is answered 500 (config_invalid) until it is fixed",
		"fields", fields, "err", err.Error(), "kind", "config_invalid "+err.Error())
	return nil
}

// flatten lists err and, for a joined error such as schema.Errors, its parts.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// answerInvalid ends every request of an instance whose configuration is
// invalid: MCP requests with an envelope echoing their id, others with
// Kong's usual JSON message. No upstream is reached.
func (p *Plugin) answerInvalid(k kong.PDK) {
	headers, err := k.RequestHeaders()
	if err != nil {
		logger.Error("reading request headers", "err", err)
		return
	}
	r := newRequest(headers)
	if r.mayHaveBody() {
		p.readBody(k, &r)
	}
	envelopes.WithLabelValues(reasonConfigInvalid.name).Inc()
	if !r.mcp {
		body, _ := json.Marshal(map[string]string{"message": p.invalid.message})
		k.Exit(500, body, jsonOnly)
		return
	}
	why := reasonConfigInvalid
	why.message = p.invalid.message
	p.reply(k, &r, why, "")
}
