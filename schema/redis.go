package schema

import (
	"fmt"
	"strings"
)

const redacted = "[redacted]"

// redisPlain is Redis without methods, for formatting.
type redisPlain Redis

func (r Redis) redact() redisPlain {
	p := redisPlain(r)
	if p.Password != "" {
		p.Password = redacted
	}
	if p.SentinelPassword != "" {
		p.SentinelPassword = redacted
	}
	return p
}

// String prints the settings with the passwords replaced by [redacted], so
// that logging a Config (%v, %+v) never shows them.
func (r Redis) String() string { return fmt.Sprintf("%+v", r.redact()) }

// GoString is String for %#v.
func (r Redis) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", r.redact()), "schema.redisPlain", "schema.Redis", 1)
}
