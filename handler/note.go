package handler

import (
	"strconv"
	"strings"
)

// Kong gives the Access and Response phases of one request nothing in common
// but what the plugin asks for, each ask a PDK round trip. A note is the one
// string Access leaves in ngx.ctx (kong.nginx.set_ctx) for the few buffered
// requests whose Response phase has work to do: an initialize whose answer
// creates a session, a session's DELETE. Every other buffered request's
// Response reads an empty note (kong.nginx.get_ctx) instead of all the
// request headers, which cost twice as much and grow with the request.
const noteKey = "mcp_relay"

// note is what Access tells Response.
type note struct {
	kind     byte   // noteLearn, noteEnd, noteList; 0: nothing to do
	consumer string // the consumer id Access saw (X-Consumer-ID)
	username string // noteList: the consumer's username (X-Consumer-Username), for access rules
	session  string // noteEnd: the session to end
	initKey  uint64 // noteLearn: the initialize params' key in inits, 0: none kept
}

const (
	noteLearn   = 'l' // a legacy initialize: learn the session its answer creates
	noteEnd     = 'e' // a session's DELETE: end the session if the replica accepts
	noteList    = 'f' // a list request whose answer access rules or tool pinning judge
	noteReroute = 'r' // a recovery's initialize sent by Kong's balancer; session: its token (reroute.go)
)

// encode is the note as stored: kind, then consumer, session, the params'
// key and the username on lines of their own. Header values and session
// ids never hold a newline (validSessionID, HTTP's own rules).
func (n note) encode() string {
	var b strings.Builder
	b.Grow(24 + len(n.consumer) + len(n.session) + len(n.username))
	b.WriteByte(n.kind)
	b.WriteByte('\n')
	b.WriteString(n.consumer)
	b.WriteByte('\n')
	b.WriteString(n.session)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatUint(n.initKey, 36))
	b.WriteByte('\n')
	b.WriteString(n.username)
	return b.String()
}

// decodeNote reads encode's output; anything else is no note.
func decodeNote(s string) note {
	if len(s) < 2 || s[1] != '\n' || (s[0] != noteLearn && s[0] != noteEnd && s[0] != noteList && s[0] != noteReroute) {
		return note{}
	}
	parts := strings.SplitN(s[2:], "\n", 4)
	if len(parts) != 4 {
		return note{}
	}
	key, err := strconv.ParseUint(parts[2], 36, 64)
	if err != nil {
		return note{}
	}
	return note{kind: s[0], consumer: parts[0], session: parts[1], initKey: key, username: parts[3]}
}
