package kong

import "log/slog"

// Logger is implemented by PDKs that can write to Kong's error log. It is
// not part of PDK: the handler uses it only where it has something to say
// (an error path), and fakes need not have it.
type Logger interface {
	// KongLog writes line through kong.log.err (level >= error),
	// kong.log.warn (>= warn) or kong.log.notice: one PDK call.
	KongLog(level slog.Level, line string) error
}

var _ Logger = Adapter{}

func (a Adapter) KongLog(level slog.Level, line string) error {
	switch {
	case level >= slog.LevelError:
		return a.k.Log.Err(line)
	case level >= slog.LevelWarn:
		return a.k.Log.Warn(line)
	}
	return a.k.Log.Notice(line)
}
