package standin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

func (n *Node) plugin() *pluginProcess {
	n.procMu.Lock()
	defer n.procMu.Unlock()
	return n.proc
}

// worker is one generation of nginx workers: a reload starts new ones,
// and an old one exits once the requests it serves (and their Log timers)
// are over; Kong sets no worker_shutdown_timeout, so an open stream keeps
// it, and its plugin process, for as long as the stream lasts.
type worker struct {
	active    atomic.Int64 // requests and Log timers in progress
	rpc       *rpcClient   // its own connections to the plugin socket
	instances *instances   // and its own plugin instances (running_instances)
}

func (n *Node) currentWorker() *worker {
	n.procMu.Lock()
	defer n.procMu.Unlock()
	return n.worker
}

// ReloadPlugin does to the plugin server what `kong reload` does. Nginx
// starts new workers before the old ones leave: the new worker 0 spawns a
// new plugin process (init_worker → start_pluginservers), which takes the
// socket over (go-pdk removes the socket file and listens anew), while the
// old process still serves the connections it has; new requests go to the
// new worker, with its own connections and plugin instances. The old worker 0 exits once the requests it was serving are
// over, streams included, and as it exits it sends the old process
// SIGTERM (exit_worker → stop_pluginservers) and does not respawn it.
// ReloadPlugin returns once the new process has the socket; the old one is
// stopped in the background when the old worker's requests end (at Close
// at the latest). The stand-in's pooled connections to it fail then, as
// Kong's do.
func (n *Node) ReloadPlugin(timeout time.Duration) error {
	old := n.plugin()
	socket := filepath.Join(n.prefix, n.info.Name+".socket")
	before, err := inode(socket)
	if err != nil {
		return err
	}
	next := newPluginProcess(old.startCmd, old.name, old.prefix, old.env, old.out, old.log)
	go next.run()
	deadline := time.Now().Add(timeout)
	for {
		if ino, err := inode(socket); err == nil && ino != before {
			break
		}
		if time.Now().After(deadline) {
			next.shutdown(5 * time.Second)
			return fmt.Errorf("standin: the new plugin process did not take the socket over within %v", timeout)
		}
		select {
		case <-next.done:
			return errors.New("standin: the new plugin process exited before listening")
		case <-time.After(10 * time.Millisecond):
		}
	}
	n.procMu.Lock()
	n.proc = next
	oldWorker := n.worker
	n.worker = &worker{rpc: newRPCClient(socket, n.opts.SocketTimeout), instances: &instances{byKey: map[string]*instance{}}}
	n.retiring = append(n.retiring, old)
	n.procMu.Unlock()
	go func() {
		for oldWorker.active.Load() > 0 && !n.closing.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		old.shutdown(timeout)
		oldWorker.rpc.closeIdle()
	}()
	return nil
}

// fileID tells a file from the one it replaced: an inode number may be
// reused at once, with a later change time.
type fileID struct {
	ino   uint64
	ctime int64
}

func inode(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, errors.New("standin: no inode")
	}
	return fileID{ino: st.Ino, ctime: st.Ctim.Nano()}, nil
}
