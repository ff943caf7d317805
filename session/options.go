package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// StoreKind names a session store.
type StoreKind string

// The stores Open knows.
const (
	StoreMemory StoreKind = "memory" // this process only; also ""
	StoreRedis  StoreKind = "redis"  // shared through Redis
	StoreOff    StoreKind = "off"    // no store: Open returns nil
)

// Options say which store Open returns and how it is set up. The plugin
// fills them from its configuration (handler's sessionOptions); a zero
// setting means the default below.
type Options struct {
	Store       StoreKind
	TTL         time.Duration // inactivity after which a record expires; 0: DefaultTTL
	MaxSessions int           // memory store bound (LRU); 0: DefaultMaxSessions
	Redis       RedisConfig   // used when Store is StoreRedis
	// TargetSeen, when set, is told the service and target of every Active
	// record a Redis store hears of from another node (its events), so that
	// the process knows which replicas answer. It must be quick and safe for
	// concurrent use. Opens with equal settings share one store, which
	// keeps the TargetSeen of the Open that created it.
	TargetSeen func(service, target string)
	// ReplicaGone, when set, is told when another node found a replica's
	// process gone (ReplicaNews). Same rules as TargetSeen.
	ReplicaGone func(target string, at time.Time)
}

// RedisConfig is the Redis connection of a redis store: cluster_nodes picks
// Redis Cluster, sentinel_master Sentinel, otherwise host and port.
type RedisConfig struct {
	Host             string
	Port             int // 0: DefaultRedisPort
	Username         string
	Password         string
	Database         int
	SSL              bool
	SSLVerify        bool
	ServerName       string
	Timeout          time.Duration // connecting and each command; 0: DefaultRedisTimeout
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string
	SentinelNodes    []RedisNode // Port 0: DefaultSentinelPort
	ClusterNodes     []RedisNode // Port 0: DefaultRedisPort
	KeyPrefix        string      // of every key the store writes
}

// RedisNode is one Sentinel or Cluster node.
type RedisNode struct {
	Host string
	Port int
}

const redacted = "[redacted]"

// redisPlain is RedisConfig without methods, for formatting.
type redisPlain RedisConfig

func (c RedisConfig) redact() redisPlain {
	p := redisPlain(c)
	if p.Password != "" {
		p.Password = redacted
	}
	if p.SentinelPassword != "" {
		p.SentinelPassword = redacted
	}
	return p
}

// String prints the settings with the passwords replaced by [redacted], so
// that logging Options (%v, %+v) never shows them.
func (c RedisConfig) String() string { return fmt.Sprintf("%+v", c.redact()) }

// GoString is String for %#v.
func (c RedisConfig) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", c.redact()), "session.redisPlain", "session.RedisConfig", 1)
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
// KeyPrefix is not part of it: stores that differ only in their key prefix
// are told apart by Open's settings key.
func (c RedisConfig) Key() string {
	k := struct {
		Host, Username, Password, ServerName           string
		Port, Database                                 int
		Timeout                                        time.Duration
		SSL, SSLVerify                                 bool
		SentinelMaster, SentinelUser, SentinelPassword string
		SentinelNodes                                  []RedisNode
		ClusterNodes                                   []RedisNode
	}{
		c.Host, c.Username, digest(c.Password), c.ServerName,
		c.Port, c.Database, c.Timeout,
		c.SSL, c.SSLVerify,
		c.SentinelMaster, c.SentinelUsername, digest(c.SentinelPassword),
		c.SentinelNodes, c.ClusterNodes,
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
