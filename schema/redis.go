package schema

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// keySecret keys the password digests in Key. It is random per process:
// keys only need to be equal within one process, and a digest that cannot be
// recomputed elsewhere cannot be used to guess a password offline.
var keySecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return b
}()

func digest(secret string) string {
	if secret == "" {
		return ""
	}
	m := hmac.New(sha256.New, keySecret)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Key identifies the connection the settings describe: equal for settings
// that can share one Redis client, different otherwise. Passwords enter it
// only as keyed digests (valid within this process), so it can be logged.
// KeyPrefix is not part of it: instances that differ only in their key
// prefix share a client and must add their prefix themselves.
func (r Redis) Key() string {
	k := struct {
		Host, Username, Password, ServerName           string
		Port, Database, Timeout                        int
		SSL, SSLVerify                                 bool
		SentinelMaster, SentinelUser, SentinelPassword string
		SentinelNodes                                  []HostPort
		ClusterNodes                                   []IPPort
	}{
		r.Host, r.Username, digest(r.Password), r.ServerName,
		r.Port, r.Database, r.Timeout,
		r.SSL, r.SSLVerify,
		r.SentinelMaster, r.SentinelUsername, digest(r.SentinelPassword),
		r.SentinelNodes, r.ClusterNodes,
	}
	if len(k.SentinelNodes) == 0 {
		k.SentinelNodes = nil // [] and null are the same setting
	}
	if len(k.ClusterNodes) == 0 {
		k.ClusterNodes = nil
	}
	b, _ := json.Marshal(k) // cannot fail: strings, ints, bools
	return string(b)
}
