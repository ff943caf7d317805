package standin

import (
	"errors"
	"net"
	"syscall"
)

// idleConnUsable decides whether a pooled idle connection may carry the
// next request, as nginx's keepalive close handlers do
// (ngx_http_lua_socket_keepalive_close_handler for the plugin socket,
// ngx_http_upstream_keepalive_close_handler for upstreams): nginx drops an
// idle connection as soon as the peer closes it or sends anything, so only
// a peek that would block leaves it in the pool. nginx acts on the read
// event; the stand-in peeks when it takes the connection from the pool,
// with the same outcome for the next request.
//
// A read with a deadline already passed cannot stand in for the peek: Go
// fails such a read before asking the kernel, so every connection looked
// alive and a plugin process's death surfaced as "broken pipe" on the next
// send, which real Kong never sees.
func idleConnUsable(c net.Conn) bool {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // a TLS upstream: peek at the socket under it
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var peekErr error
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // a peek, never a wait
	})
	return err == nil && errors.Is(peekErr, syscall.EAGAIN)
}
