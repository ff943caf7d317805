package standin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

func (n *Node) plugin() *pluginProcess {
	n.procMu.Lock()
	defer n.procMu.Unlock()
	return n.proc
}

// ReloadPlugin does to the plugin server what `kong reload` does. Nginx
// starts new workers before the old ones leave: the new worker 0 spawns a
// new plugin process (init_worker → start_pluginservers), which takes the
// socket over (go-pdk removes the socket file and listens anew), while the
// old process still serves the connections it has; the old worker 0, as it
// exits, sends the old process SIGTERM (exit_worker → stop_pluginservers)
// and does not respawn it. ReloadPlugin returns once the old process has
// exited; the stand-in's pooled connections to it fail then, as Kong's do.
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
	n.procMu.Unlock()
	old.shutdown(timeout)
	return nil
}

func inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("standin: no inode")
	}
	return st.Ino, nil
}
