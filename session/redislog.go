package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-relay/mcp-relay/logging"
)

// go-redis logs every failed dial. During an outage that is one line per
// request, which would flood Kong's error log (it collects the plugin's
// stderr). The plugin process uses go-redis only here, so the first NewRedis
// installs a process-wide logger that lets one line through per window and
// counts the rest. go-redis log lines name addresses, never credentials.
var installRedisLogger sync.Once

const redisLogWindow = 10 * time.Second

type quietLogger struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *quietLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < redisLogWindow {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	msg := fmt.Sprintf(format, v...)
	if n > 0 {
		msg += fmt.Sprintf(" (%d more redis log lines suppressed)", n)
	}
	// Info: the store's own events (unavailable, back) are the ones Kong's
	// log shows at their level; go-redis's lines are the detail.
	logging.Logger.Info("redis client", "plugin", "mcp-relay", "detail", msg)
}

func quietRedisLogs() {
	installRedisLogger.Do(func() { redis.SetLogger(&quietLogger{}) })
}
