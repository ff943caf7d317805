package main

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// A Kong reload starts a new worker, whose plugin process takes the plugin
// socket over (go-pdk removes the socket file and listens anew), while the
// old worker serves its open requests to their end, SSE streams included,
// and only then stops the old process (Kong sets no
// worker_shutdown_timeout). The old process notices the takeover by the
// socket file's inode and hands over what is per process: the memory
// store's sessions (written for the new process to merge) and the metrics
// port.

// takeoverCheckEvery is how often the socket file is checked (a stat).
const takeoverCheckEvery = 50 * time.Millisecond

var (
	handoversMu sync.Mutex
	handovers   []func() // run once, when another process took the socket over
)

// onTakeover registers f to run when another process takes the socket over.
func onTakeover(f func()) {
	handoversMu.Lock()
	handovers = append(handovers, f)
	handoversMu.Unlock()
}

// fileID tells a file from the one it replaced: an inode number may be
// reused at once, with a later change time.
type fileID struct {
	ino   uint64
	ctime int64
}

// watchTakeover waits until this process's socket file is replaced, then
// runs the handovers. prev is the socket file before go-pdk listened (a
// previous process's; zero: none): the first other one is this process's.
func watchTakeover(socket string, prev fileID, log *slog.Logger) {
	var mine fileID
	for {
		time.Sleep(takeoverCheckEvery)
		ino, err := socketInode(socket)
		switch {
		case err != nil || ino == prev && mine == (fileID{}):
			continue // not listening yet, or between a removal and a listen
		case mine == (fileID{}):
			mine = ino // go-pdk's listener of this process
			continue
		case ino == mine:
			continue
		}
		log.Info("another plugin process took the socket over (kong reload): handing the sessions and the metrics port over to it; this one serves its old worker's requests until Kong stops it",
			"socket", socket)
		handoversMu.Lock()
		fs := handovers
		handoversMu.Unlock()
		for _, f := range fs {
			f()
		}
		return
	}
}

func socketInode(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, errors.New("no inode")
	}
	return fileID{ino: st.Ino, ctime: st.Ctim.Nano()}, nil
}
