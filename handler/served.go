package handler

import (
	"net"
	"strconv"
	"unsafe"

	"github.com/tidwall/gjson"
)

// served is what the Log phase needs of kong.log.serialize().
type served struct {
	status          int
	requestSession  string
	responseSession string
	consumer        string
	target          string // ip:port of the last balancer try
	service         string // the Kong service's id
	modern          bool
	recovery        string // the request was a recovery's initialize (reroute.go)
	started         int64  // when Kong received the request, unix milliseconds
}

func readServed(data []byte) served {
	// gjson on a string view: the results reference data, which outlives them.
	js := unsafe.String(unsafe.SliceData(data), len(data))
	res := gjson.GetMany(js,
		"response.status",
		"request.headers.mcp-session-id", "response.headers.mcp-session-id",
		"request.headers.x-consumer-id", "request.headers.mcp-protocol-version", "tries", "service.id",
		"request.headers."+hRecovery, "started_at")
	f := served{
		status:          int(res[0].Int()),
		requestSession:  headerValue(res[1]),
		responseSession: headerValue(res[2]),
		consumer:        headerValue(res[3]),
		modern:          isModern(headerValue(res[4])),
		service:         res[6].Str,
		recovery:        headerValue(res[7]),
		started:         res[8].Int(),
	}
	if tries := res[5].Array(); len(tries) > 0 {
		last := tries[len(tries)-1]
		ip, port := last.Get("ip").Str, last.Get("port").Int()
		if ip != "" && port > 0 {
			f.target = net.JoinHostPort(ip, strconv.FormatInt(port, 10))
		}
	}
	return f
}

// headerValue reads a serialized header: a string, or an array when the
// header was repeated (then the first, as kong.request.get_header does).
func headerValue(v gjson.Result) string {
	if v.IsArray() {
		return v.Get("0").Str
	}
	return v.Str
}
