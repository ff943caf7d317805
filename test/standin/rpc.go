package standin

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// The socket protocol of kong/runloop/plugin_servers/rpc/pb_rpc.lua: each
// frame is a 4-byte little-endian length and that many bytes; Kong sends an
// RpcCall, and for cmd_handle_event answers the plugin's PDK calls (a
// method-name frame and an argument frame each) until an empty frame ends
// the event; then it reads the RpcReturn.

// rpcClient is Kong's side of the plugin socket: one connection per call
// (ngx.socket.connect), put back into a keepalive pool after a complete
// call (c:setkeepalive()).
type rpcClient struct {
	socket  string
	timeout time.Duration // lua_socket_{connect,send,read}_timeout
	maxIdle int           // lua_socket_pool_size

	mu   sync.Mutex
	idle []*rpcConn

	// connect replaces dialing the socket (tests: a plugin process dying
	// as a frame reaches it).
	connect func() (net.Conn, error)

	seq atomic.Int64
}

func newRPCClient(socket string, timeout time.Duration) *rpcClient {
	return &rpcClient{socket: socket, timeout: timeout, maxIdle: 30}
}

// cosocketError turns a Go network error into the string OpenResty's
// cosocket API returns, which handle_event matches against.
func cosocketError(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "no such file or directory"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	}
	return err.Error()
}

// rpcConn is a plugin socket connection with its read buffer.
type rpcConn struct {
	net.Conn
	br *bufio.Reader
}

type rpcError struct{ msg string }

func (e *rpcError) Error() string { return e.msg }

func (c *rpcClient) dial() (*rpcConn, error) {
	c.mu.Lock()
	for len(c.idle) > 0 {
		conn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		c.mu.Unlock()
		if conn.br.Buffered() == 0 && idleConnUsable(conn.Conn) {
			return conn, nil
		}
		_ = conn.Close()
		c.mu.Lock()
	}
	c.mu.Unlock()
	var raw net.Conn
	var err error
	if c.connect != nil {
		raw, err = c.connect()
	} else {
		raw, err = net.DialTimeout("unix", c.socket, c.timeout)
	}
	if err != nil {
		return nil, &rpcError{cosocketError(err)}
	}
	return &rpcConn{Conn: raw, br: bufio.NewReaderSize(raw, 16*1024)}, nil
}

func (c *rpcClient) keepalive(conn *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= c.maxIdle {
		_ = conn.Close()
		return
	}
	c.idle = append(c.idle, conn)
}

func (c *rpcClient) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.idle {
		_ = conn.Close()
	}
	c.idle = nil
}

func (c *rpcClient) readFrame(conn *rpcConn) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(c.timeout))
	var hdr [4]byte
	if _, err := io.ReadFull(conn.br, hdr[:]); err != nil {
		return nil, &rpcError{cosocketError(err)}
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	buf := make([]byte, n)
	if _, err := io.ReadFull(conn.br, buf); err != nil {
		return nil, &rpcError{cosocketError(err)}
	}
	return buf, nil
}

// Where pb_rpc.lua (Kong 3.9.1) asserts its sends: Rpc:call's RpcCall and
// write_frame's PDK replies.
const (
	sendCallAt  = "pb_rpc.lua:284"
	sendReplyAt = "pb_rpc.lua:264"
)

// writeFrame sends one frame. pb_rpc.lua asserts every send, so a failed
// one raises a Lua error that no caller catches: handle_event neither
// retries nor resets, and a start_instance leaves its claim taken (see
// instances.get). With the pool keeping only live connections, a send
// fails only when a plugin process dies as the frame reaches it.
func (c *rpcClient) writeFrame(conn *rpcConn, msg []byte, at string) error {
	_ = conn.SetWriteDeadline(time.Now().Add(c.timeout))
	buf := make([]byte, 4+len(msg))
	binary.LittleEndian.PutUint32(buf, uint32(len(msg)))
	copy(buf[4:], msg)
	if _, err := conn.Write(buf); err != nil {
		return luaError(at + ": " + cosocketError(err))
	}
	return nil
}

// bridgeFunc answers one PDK call of an event. It returns the reply frame,
// or an error that ends the event without a reply (see eventAbort).
type bridgeFunc func(method string, args []byte) ([]byte, error)

// eventAbort ends an event without answering the plugin's last PDK call:
// kong.response.exit yielding the handler's coroutine, ngx.exit, a Lua
// error raised inside call_pdk, or "method not found". The connection is
// left as it is and closed when the request (or log timer) is finalized,
// as nginx cleans up a request's cosockets.
type eventAbort struct {
	err  error    // the error handle_event sees (nil for exit)
	conn net.Conn // to close at finalization
}

func (e *eventAbort) Error() string {
	if e.err == nil {
		return "event ended by exit"
	}
	return e.err.Error()
}

// call is Rpc:call: connect, send the RpcCall, run the bridge loop when
// asked, read the RpcReturn and keep the connection alive.
func (c *rpcClient) call(msg *pb.RpcCall, bridge bridgeFunc) (*pb.RpcReturn, error) {
	seq := c.seq.Add(1)
	msg.Sequence = seq
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(msg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := c.writeFrame(conn, data, sendCallAt); err != nil {
		_ = conn.Close()
		return nil, err
	}
	for bridge != nil {
		method, err := c.readFrame(conn)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		if len(method) == 0 {
			break
		}
		args, err := c.readFrame(conn)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		reply, err := bridge(string(method), args)
		if err != nil {
			var abort *eventAbort
			if errors.As(err, &abort) {
				abort.conn = conn
				return nil, abort
			}
			_ = conn.Close()
			return nil, err
		}
		if err := c.writeFrame(conn, reply, sendReplyAt); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	data, err = c.readFrame(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	ret := &pb.RpcReturn{}
	if err := proto.Unmarshal(data, ret); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("decoding RpcReturn: %v", err)
	}
	c.keepalive(conn)
	if ret.Sequence != seq {
		// pb_rpc.lua asserts msg.sequence == msg_id
		return nil, fmt.Errorf("assertion failed! (sequence %d, expected %d)", ret.Sequence, seq)
	}
	return ret, nil
}

// instance is an entry of running_instances (plugin.lua).
type instance struct {
	id      int32
	seq     int
	ready   chan struct{} // closed when the start returned: id known, or err set
	err     error
	dropped chan struct{} // closed when a waiter gave up on the claim and removed it
}

// instanceClaimWait is how long get_instance_id waits for another
// request's start of the same instance (plugin.lua: 100 steps of 0.1 s).
var instanceClaimWait = 10 * time.Second

// claimError is get_instance_id's "Could not claim instance_id": returned,
// not raised, so handle_event logs "pluginserver error" and answers 500.
type claimError struct{ name, key string }

func (e *claimError) Error() string {
	return fmt.Sprintf("Could not claim instance_id for %s (key: %s)", e.name, e.key)
}

// instances is running_instances plus get_instance_id and reset_instance
// of kong/runloop/plugin_servers/plugin.lua.
type instances struct {
	mu     sync.Mutex
	byKey  map[string]*instance // by plugin id (kong.plugin.get_id())
	starts atomic.Int64
}

// get returns the instance id for a plugin configuration, starting an
// instance (cmd_start_instance) when there is none. A concurrent start of
// the same key is waited for, up to instanceClaimWait; a waiter that sees
// the claim removed claims it itself, as plugin.lua's 0.1 s polling does.
func (in *instances) get(c *rpcClient, name string, p *Plugin, confJSON []byte, log *nodeLog) (int32, error) {
	for {
		in.mu.Lock()
		inst := in.byKey[p.ID]
		if inst == nil {
			inst = &instance{seq: p.Seq, ready: make(chan struct{}), dropped: make(chan struct{})}
			in.byKey[p.ID] = inst
			in.mu.Unlock()
			in.starts.Add(1)
			ret, err := c.call(&pb.RpcCall{Call: &pb.RpcCall_CmdStartInstance{CmdStartInstance: &pb.CmdStartInstance{
				Name: name, Config: confJSON}}}, nil)
			if err == nil && ret.GetInstanceStatus() == nil {
				err = errors.New("no instance status in reply")
			}
			var thrown *luaErr
			if errors.As(err, &thrown) {
				// Raised out of get_instance_id before it removes its
				// claim (Kong 3.9.1): the claim stays without an id, and
				// the plugin's requests wait for it until one gives up.
				return 0, err
			}
			in.mu.Lock()
			if err != nil {
				log.logf(lvlErr, "[kong] starting instance: %v", err)
				delete(in.byKey, p.ID) // remove claim, some other thread might succeed
				inst.err = err
			} else {
				inst.id = ret.GetInstanceStatus().GetInstanceId()
				log.logf(lvlDebug, "[kong] started plugin server: seq %d, worker 0, instance id %d", p.Seq, inst.id)
			}
			close(inst.ready)
			in.mu.Unlock()
			if err != nil {
				return 0, err // get_instance_id raises error(err)
			}
			return inst.id, nil
		}
		in.mu.Unlock()
		select {
		case <-inst.ready:
			if inst.err == nil {
				return inst.id, nil
			}
			// the start failed and removed its claim: claim it ourselves
		case <-inst.dropped:
			// another waiter gave up on a claim left taken: claim it ourselves
		case <-time.After(instanceClaimWait):
			in.mu.Lock()
			if in.byKey[p.ID] == inst {
				delete(in.byKey, p.ID)
				close(inst.dropped)
			}
			in.mu.Unlock()
			return 0, &claimError{name: name, key: p.ID}
		}
	}
}

// reset is reset_instance: every instance of the plugin is forgotten (the
// plugin server may have died and lost them all).
func (in *instances) reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, inst := range in.byKey {
		select {
		case <-inst.ready:
			delete(in.byKey, k)
		default:
			// a start is under way; leave its claim
		}
	}
}

func isRetryable(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no plugin instance") || strings.Contains(s, "closed")
}
