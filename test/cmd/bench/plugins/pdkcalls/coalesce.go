package pdkcalls

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/Kong/go-pdk"
	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
)

// ServeCoalesced is Serve with a plugin-server loop of its own instead of
// go-pdk's (server/pbserver.go): the same protocol, the same go-pdk PDK
// (pdk.Init over the event's connection), but a connection whose writes wait
// in a buffer until the plugin reads. go-pdk writes every frame as two
// writes, its 4-byte length and its bytes, so one PDK call is four writes
// (method frame, args frame) and its reply two reads, and Kong's worker may
// wake for each; here a call leaves in one write and its reply is read
// through a buffer. The bench measures whether that lowers Kong's CPU per
// call. -dump is go-pdk's own.
func ServeCoalesced(constructor func() interface{}) {
	for _, a := range os.Args[1:] {
		if a == "-dump" || a == "--dump" {
			Serve(constructor)
			return
		}
	}
	flag.Parse() // go-pdk's server registered -kong-prefix
	ServeLoop(constructor)
}

// ServeLoop is ServeCoalesced's server loop alone, for a plugin that
// prints its own -dump: it listens on <-kong-prefix>/<name>.socket and
// never returns.
func ServeLoop(constructor func() interface{}) {
	prefix := "/usr/local/kong"
	if f := flag.Lookup("kong-prefix"); f != nil {
		prefix = f.Value.String()
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	socket := filepath.Join(prefix, filepath.Base(exe)+".socket")
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		log.Fatal(err)
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("Listening on socket: %s (coalescing writes)", socket)
	s := &coalescingServer{constructor: constructor, instances: map[int32]any{}}
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go s.serve(newCoalescingConn(conn))
	}
}

// coalescingConn holds writes until the next read (or Flush), and reads
// through a buffer.
type coalescingConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 16<<10)}
}

func (c *coalescingConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	return c.r.Read(p)
}

func (c *coalescingConn) Flush() error { return c.w.Flush() }

type coalescingServer struct {
	constructor func() interface{}
	mu          sync.Mutex
	instances   map[int32]any
	next        int32
}

// serve answers Kong's RpcCalls on one connection, as go-pdk's servePb.
func (s *coalescingServer) serve(c *coalescingConn) {
	defer c.Close()
	for {
		data, err := readFrame(c)
		if err != nil {
			if err != io.EOF {
				log.Print(err)
			}
			return
		}
		var call pb.RpcCall
		if err := proto.Unmarshal(data, &call); err != nil {
			log.Print(err)
			return
		}
		ret, err := s.handle(c, &call)
		if err != nil {
			log.Print(err)
			return
		}
		out, err := proto.Marshal(ret)
		if err == nil {
			err = writeFrame(c, out)
		}
		if err == nil {
			err = c.Flush()
		}
		if err != nil {
			return // after kong.response.exit Kong closed the event's connection
		}
	}
}

func (s *coalescingServer) handle(c *coalescingConn, call *pb.RpcCall) (*pb.RpcReturn, error) {
	ret := &pb.RpcReturn{Sequence: call.Sequence}
	switch m := call.Call.(type) {
	case *pb.RpcCall_CmdStartInstance:
		inst := s.constructor()
		if err := json.Unmarshal(m.CmdStartInstance.Config, inst); err != nil {
			return nil, fmt.Errorf("decoding config: %w", err)
		}
		var meta struct {
			Seq int32 `json:"__seq__"`
		}
		_ = json.Unmarshal(m.CmdStartInstance.Config, &meta)
		s.mu.Lock()
		id := meta.Seq
		if id == 0 {
			s.next++
			id = -s.next
		}
		s.instances[id] = inst
		s.mu.Unlock()
		ret.Return = &pb.RpcReturn_InstanceStatus{InstanceStatus: &pb.InstanceStatus{
			Name: m.CmdStartInstance.Name, InstanceId: id, StartedAt: time.Now().Unix()}}
	case *pb.RpcCall_CmdGetInstanceStatus, *pb.RpcCall_CmdCloseInstance:
		var id int32
		if g, ok := m.(*pb.RpcCall_CmdGetInstanceStatus); ok {
			id = g.CmdGetInstanceStatus.InstanceId
		} else {
			id = m.(*pb.RpcCall_CmdCloseInstance).CmdCloseInstance.InstanceId
		}
		s.mu.Lock()
		_, ok := s.instances[id]
		if _, closing := m.(*pb.RpcCall_CmdCloseInstance); closing {
			delete(s.instances, id)
		}
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("no plugin instance %d", id)
		}
		ret.Return = &pb.RpcReturn_InstanceStatus{InstanceStatus: &pb.InstanceStatus{Name: "---", InstanceId: id}}
	case *pb.RpcCall_CmdHandleEvent:
		s.mu.Lock()
		inst, ok := s.instances[m.CmdHandleEvent.InstanceId]
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("no plugin instance %d", m.CmdHandleEvent.InstanceId)
		}
		k := pdk.Init(c)
		switch ev := m.CmdHandleEvent.EventName; ev {
		case "access":
			if h, ok := inst.(interface{ Access(*pdk.PDK) }); ok {
				h.Access(k)
			}
		case "response":
			if h, ok := inst.(interface{ Response(*pdk.PDK) }); ok {
				h.Response(k)
			}
		case "log":
			if h, ok := inst.(interface{ Log(*pdk.PDK) }); ok {
				h.Log(k)
			}
		default:
			return nil, fmt.Errorf("undefined method %s", ev)
		}
		if err := writeFrame(c, nil); err != nil { // the end of the event's calls
			return nil, err
		}
	default:
		return nil, fmt.Errorf("RPC call has unexpected type %T", m)
	}
	return ret, nil
}

// readFrame and writeFrame are the protocol's frames: a 4-byte
// little-endian length, then the bytes.
func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	data := make([]byte, binary.LittleEndian.Uint32(n[:]))
	_, err := io.ReadFull(r, data)
	return data, err
}

func writeFrame(w io.Writer, data []byte) error {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(data)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}
