package standin

import (
	"bytes"
	"sync"
)

// LogBuffer is an Options.Log writer that keeps everything a node (and its
// plugin process) logs, safe for the node's concurrent writers, so tests
// can search the log afterwards.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
