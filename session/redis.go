package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of the Redis store's node-local cache.
const (
	DefaultCacheSize = 10_000
	// DefaultCacheTTL: events keep the cache coherent (a lost subscription
	// flushes it), so the life only bounds how long a node goes without
	// reading a hot record from Redis: at 60 s, 99% of the requests of a
	// session sending 2 requests/s through a node need no round trip.
	DefaultCacheTTL = 60 * time.Second
)

// RedisOptions configures NewRedis beyond the connection settings.
type RedisOptions struct {
	// TTL is how long an Active session may go unused (default 1h).
	TTL time.Duration
	// TombstoneTTL is how long Lost and Ended records are kept
	// (default min(TTL, 10m)).
	TombstoneTTL time.Duration
	// CacheSize is the number of records this node keeps in memory in front
	// of Redis; 0 disables the cache.
	CacheSize int
	// CacheTTL is how long a cached record is trusted (default 60s, at most
	// TTL/10 so that reads reaching Redis keep sliding the TTL).
	CacheTTL time.Duration
	// PingEvery is how long the event subscription may stay quiet before it
	// is pinged (default 1s). An unanswered ping (within the timeout) counts
	// as a lost subscription and flushes the cache, so a silently dead
	// connection leaves cached records trusted for at most about
	// PingEvery + timeout.
	PingEvery time.Duration
	// TargetSeen, when set, is told the service and target of every Active
	// record written by another node (its events); see Options.TargetSeen.
	TargetSeen func(service, target string)
	// ReplicaGone, when set, is told of the replicas another node found
	// gone; see Options.ReplicaGone.
	ReplicaGone func(target string, at time.Time)
}

// Redis is the store shared by all Kong nodes. A record is one string key,
// <prefix>s:{<id>}, holding a compact encoding, expiring with PEXPIRE. Every
// write also publishes "<id> <value>" on <prefix>events; each node's single
// subscriber uses those events to wake its waiting Lookups and to keep its
// cache coherent. Writes are Lua scripts: SET and PUBLISH in one round trip.
// An event is "<node tag> <id> <value>"; a node does not invalidate its
// cache on its own events, whose values it already stored when writing.
type Redis struct {
	client  redis.UniversalClient
	timeout time.Duration
	prefix  string
	channel string
	tag     string // names this node in its own events
	desc    string // for String; no credentials
	// Active records are written with fullMS = TTL + TTL/10 + cache life, so a
	// session in use never expires early; reads re-arm it server-side when
	// fewer than refreshMS remain, i.e. at most once per TTL/10.
	fullMS, refreshMS, tombMS int64
	health                    time.Duration
	targetSeen                func(service, target string) // nil: none
	replicaGone               func(target string, at time.Time)

	cache    *recCache
	pinCache *pinCache // tool pins (redis_toolpins.go)
	waits    *waitSet[string]

	roundTrips    atomic.Uint64
	subscriptions atomic.Uint64
	subscribed    atomic.Bool

	mu     sync.Mutex
	ps     *redis.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	closed atomic.Bool
}

var _ Store = (*Redis)(nil)

// RedisStats are counters for tests and metrics.
type RedisStats struct {
	// RoundTrips counts commands and pipelines sent, pub/sub excluded.
	RoundTrips uint64
	// Subscriptions counts confirmed (re)subscriptions to the event channel.
	Subscriptions uint64
	// Subscribed tells whether events are flowing (the cache is in use).
	Subscribed bool
	// Cached is the number of records in the node-local cache.
	Cached int
}

// NewRedis returns a store on the Redis named by cfg. It does not dial:
// connections are made on first use and remade after outages.
func NewRedis(cfg RedisConfig, opts RedisOptions) (*Redis, error) {
	uo, err := redisOptions(cfg)
	if err != nil {
		return nil, err
	}
	quietRedisLogs()
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TombstoneTTL <= 0 {
		opts.TombstoneTTL = min(opts.TTL, MaxTombstoneTTL)
	}
	if opts.PingEvery <= 0 {
		opts.PingEvery = time.Second
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	life := min(opts.CacheTTL, opts.TTL/10)
	s := &Redis{
		client:      redis.NewUniversalClient(uo),
		timeout:     uo.ReadTimeout,
		prefix:      cfg.KeyPrefix,
		channel:     cfg.KeyPrefix + "events",
		tag:         strconv.FormatUint(rand.Uint64(), 36),
		desc:        fmt.Sprintf("session.Redis(%s %q)", strings.Join(uo.Addrs, ","), cfg.KeyPrefix),
		fullMS:      max((opts.TTL + opts.TTL/10 + life).Milliseconds(), 1),
		refreshMS:   max((opts.TTL + life).Milliseconds(), 1),
		tombMS:      max(opts.TombstoneTTL.Milliseconds(), 1),
		health:      opts.PingEvery,
		targetSeen:  opts.TargetSeen,
		replicaGone: opts.ReplicaGone,
		waits:       newWaitSet[string](),
		pinCache:    newPinCache(opts.CacheTTL),
		done:        make(chan struct{}),
	}
	if opts.CacheSize > 0 && life > 0 {
		s.cache = newRecCache(opts.CacheSize, life)
	}
	s.client.AddHook(countHook{&s.roundTrips})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// redisOptions maps the settings onto go-redis: ClusterNodes picks Cluster,
// SentinelMaster picks Sentinel, otherwise Host/Port.
func redisOptions(c RedisConfig) (*redis.UniversalOptions, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	o := &redis.UniversalOptions{
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.Database,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		PoolTimeout:  timeout,
		// Context deadlines bound every socket operation, so a paused or
		// unreachable Redis costs at most the timeout.
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		Protocol:              2,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	switch {
	// The configuration's validation reports these by field; they stay
	// here for Go callers.
	case len(c.ClusterNodes) > 0 && c.SentinelMaster != "":
		return nil, errors.New("session: redis: set ClusterNodes or SentinelMaster, not both")
	case len(c.ClusterNodes) > 0:
		if c.Database != 0 {
			return nil, errors.New("session: redis: Redis Cluster has no database other than 0")
		}
		for _, n := range c.ClusterNodes {
			o.Addrs = append(o.Addrs, net.JoinHostPort(n.Host, strconv.Itoa(portOr(n.Port))))
		}
		o.IsClusterMode = true
	case c.SentinelMaster != "":
		if len(c.SentinelNodes) == 0 {
			return nil, errors.New("session: redis: SentinelMaster needs SentinelNodes")
		}
		for _, n := range c.SentinelNodes {
			port := n.Port
			if port == 0 {
				port = DefaultSentinelPort
			}
			o.Addrs = append(o.Addrs, net.JoinHostPort(n.Host, strconv.Itoa(port)))
		}
		o.MasterName = c.SentinelMaster
		o.SentinelUsername = c.SentinelUsername
		o.SentinelPassword = c.SentinelPassword
	default:
		if c.Host == "" {
			return nil, errors.New("session: redis: Host, SentinelMaster or ClusterNodes is required")
		}
		o.Addrs = []string{net.JoinHostPort(c.Host, strconv.Itoa(portOr(c.Port)))}
	}
	if c.SSL {
		o.TLSConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         c.ServerName,
			InsecureSkipVerify: !c.SSLVerify, //nolint:gosec // Kong's ssl_verify=false
		}
	}
	return o, nil
}

func portOr(p int) int {
	if p == 0 {
		return DefaultRedisPort
	}
	return p
}

// The hash tag keeps every key of a session in one Cluster slot.
func (s *Redis) key(id string) string { return s.prefix + "s:{" + id + "}" }

// Lookup reads the record and re-arms its expiry when due, in one script.
var scriptLookup = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'A' then
  local t = redis.call('PTTL', KEYS[1])
  if t >= 0 and t < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
return v`)

// ARGV: value, px, channel, "<tag> <id>".
var scriptLearn = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. ARGV[1])
return 1`)

// Replaces the state letter, keeping target, consumer and creation time.
// ARGV: state letter, px, channel, "<tag> <id>", rest of a record for
// unknown ids.
var scriptTombstone = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local nv
if v then nv = ARGV[1] .. string.sub(v, 2) else nv = ARGV[1] .. ARGV[5] end
redis.call('SET', KEYS[1], nv, 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. nv)
return nv`)

// Lookup implements Store. A cached record costs no round trip. An unknown
// id waits for the event that its Learn publishes (from any node), then
// reads once more at the deadline; there is no polling.
func (s *Redis) Lookup(ctx context.Context, id string, wait time.Duration) (Record, bool, error) {
	if s.closed.Load() {
		return Record{}, false, errClosed
	}
	if s.cache != nil {
		if rec, ok := s.cache.get(id); ok {
			return rec, true, nil
		}
	}
	var w *waiter[string]
	if wait > 0 {
		// Before the read, so a Learn landing right after it is not missed.
		w = s.waits.add(id)
		defer s.waits.remove(id, w)
	}
	rec, ok, err := s.fetch(ctx, id)
	if err != nil || ok || w == nil {
		return rec, ok, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case v := <-w.ch:
		rec, err := decodeRecord(v)
		if err != nil {
			return Record{}, false, fmt.Errorf("%w: redis event: %w", ErrUnavailable, err)
		}
		return rec, true, nil
	case <-t.C:
	case <-ctx.Done():
		return Record{}, false, ctx.Err()
	}
	return s.fetch(ctx, id)
}

func (s *Redis) fetch(ctx context.Context, id string) (Record, bool, error) {
	var tok cacheToken
	if s.cache != nil {
		tok = s.cache.token(id)
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	v, err := scriptLookup.Run(cctx, s.client, []string{s.key(id)}, s.refreshMS, s.fullMS).Text()
	cancel()
	if errors.Is(err, redis.Nil) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, s.failed("lookup", err)
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return Record{}, false, unavailable("lookup", err)
	}
	if s.cache != nil {
		s.cache.fill(id, rec, tok)
	}
	return rec, true, nil
}

// Learn implements Store.
func (s *Redis) Learn(ctx context.Context, id string, rec Record) error {
	if s.closed.Load() {
		return errClosed
	}
	if id == "" {
		return errNoID
	}
	if rec.State == 0 {
		rec.State = Active
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now()
	}
	val := encodeRecord(rec)
	px := s.fullMS
	if rec.State != Active {
		px = s.tombMS
	}
	var tok cacheToken
	if s.cache != nil {
		tok = s.cache.token(id)
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	err := scriptLearn.Run(cctx, s.client, []string{s.key(id)}, val, px, s.channel, s.tag+" "+id).Err()
	cancel()
	if err != nil {
		if s.cache != nil {
			s.cache.invalidate(id) // it may have been written anyway
		}
		return s.failed("learn", err)
	}
	if s.cache != nil {
		stored, _ := decodeRecord(val) // Created as stored, in milliseconds
		s.cache.put(id, stored, tok)
	}
	// Local waiters need not wait for the event's round trip.
	s.waits.notify(id, val)
	return nil
}

// MarkLost implements Store.
func (s *Redis) MarkLost(ctx context.Context, id string) error {
	return s.tombstone(ctx, id, Lost, "mark lost")
}

// End implements Store.
func (s *Redis) End(ctx context.Context, id string) error {
	return s.tombstone(ctx, id, Ended, "end")
}

// tombstone returns once this node's subscriber has seen its own event
// (bounded by the timeout). Redis hands an event to all subscribers at once,
// so by then it is on its way into the other nodes, which drop their cached
// copy as they apply it: almost always before the client's next request. One
// that outruns it still reaches the session's own replica (the record it
// had cached), which answers for the session it ended.
func (s *Redis) tombstone(ctx context.Context, id string, st State, op string) error {
	if s.closed.Load() {
		return errClosed
	}
	if id == "" {
		return errNoID
	}
	var tok cacheToken
	if s.cache != nil {
		tok = s.cache.token(id)
	}
	var w *waiter[string]
	if s.subscribed.Load() {
		w = s.waits.add(id)
		defer s.waits.remove(id, w)
	}
	rest := encodeRecord(Record{Created: time.Now(), State: st})[1:]
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	nv, err := scriptTombstone.Run(cctx, s.client, []string{s.key(id)}, stateLetter(st), s.tombMS, s.channel, s.tag+" "+id, rest).Text()
	if err != nil {
		if s.cache != nil {
			s.cache.invalidate(id)
		}
		return s.failed(op, err)
	}
	if s.cache != nil {
		if rec, err := decodeRecord(nv); err == nil {
			s.cache.put(id, rec, tok)
		} else {
			s.cache.invalidate(id)
		}
	}
	if w == nil {
		s.waits.notify(id, nv)
		return nil
	}
	for {
		select {
		case v := <-w.ch:
			if v == nv {
				return nil
			}
		case <-cctx.Done():
			// Written but not echoed: the subscription is down, and every
			// node flushes its cache when that happens.
			s.waits.notify(id, nv)
			return nil
		}
	}
}

// run keeps one subscription to the event channel alive. Losing it (error,
// or no answer to a ping) flushes the cache and bypasses it until the
// subscription is confirmed again: events missed in between cannot leave a
// stale record behind.
func (s *Redis) run() {
	defer close(s.done)
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		ps := s.client.Subscribe(sctx, s.channel, s.pinsChannel())
		cancel()
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = ps.Close()
			return
		}
		s.ps = ps
		s.mu.Unlock()

		if s.receive(ps) {
			backoff = 50 * time.Millisecond
		}
		s.subscribed.Store(false)
		if s.cache != nil {
			s.cache.down()
		}
		s.pinCache.down()
		s.reloadCluster()
		s.mu.Lock()
		s.ps = nil
		s.mu.Unlock()
		_ = ps.Close()

		t := time.NewTimer(backoff)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

// receive reads events until the subscription fails; it reports whether it
// had been confirmed.
func (s *Redis) receive(ps *redis.PubSub) (confirmed bool) {
	pinged := false
	for {
		wait := s.health
		if pinged {
			wait = s.timeout
		}
		msg, err := ps.ReceiveTimeout(s.ctx, wait)
		if err != nil {
			if s.ctx.Err() != nil || !confirmed || pinged || !isTimeout(err) {
				return confirmed
			}
			// Quiet channel: make sure the connection is still alive.
			pctx, cancel := context.WithTimeout(s.ctx, s.timeout)
			err = ps.Ping(pctx)
			cancel()
			if err != nil {
				return confirmed
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !confirmed {
				confirmed = true
				s.subscriptions.Add(1)
				if s.cache != nil {
					s.cache.up()
				}
				s.pinCache.up()
				s.subscribed.Store(true)
			}
		case *redis.Message:
			if m.Channel == s.pinsChannel() {
				s.onPinEvent(m.Payload)
			} else {
				s.onEvent(m.Payload)
			}
		}
	}
}

func (s *Redis) onEvent(payload string) {
	tag, rest, _ := strings.Cut(payload, " ")
	id, val, ok := strings.Cut(rest, " ")
	if !ok {
		return
	}
	if len(val) > 0 && val[0] == goneLetter { // replica news: id is the target
		if at, err := strconv.ParseInt(val[1:], 10, 64); err == nil && tag != s.tag && s.replicaGone != nil {
			s.replicaGone(id, time.Unix(0, at))
		}
		return
	}
	if tag != s.tag {
		if s.cache != nil {
			s.cache.invalidate(id)
		}
		if s.targetSeen != nil && len(val) > 0 && val[0] == 'A' {
			if rec, err := decodeRecord(val); err == nil && rec.Target != "" {
				s.targetSeen(rec.Service, rec.Target)
			}
		}
	}
	s.waits.notify(id, val)
}

var _ ReplicaNews = (*Redis)(nil)

// goneLetter starts the value of replica news, a letter no record state
// uses: "<tag> <target> G<unix nanoseconds>".
const goneLetter = 'G'

// The replica news key: <prefix>g:{<target>}, holding unix nanoseconds.
func (s *Redis) goneKey(target string) string { return s.prefix + "g:{" + target + "}" }

// ARGV: unix nanoseconds, px, channel, event. Only a later time is kept.
var scriptGone = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or tonumber(v) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`)

// ReplicaGone implements ReplicaNews: kept as long as an Active record.
func (s *Redis) ReplicaGone(ctx context.Context, target string, at time.Time) error {
	if s.closed.Load() {
		return errClosed
	}
	ns := strconv.FormatInt(at.UnixNano(), 10)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := scriptGone.Run(cctx, s.client, []string{s.goneKey(target)}, ns, s.fullMS, s.channel,
		s.tag+" "+target+" "+string(goneLetter)+ns).Err()
	if err != nil {
		return s.failed("replica gone", err)
	}
	return nil
}

// ReplicaGoneAt implements ReplicaNews.
func (s *Redis) ReplicaGoneAt(ctx context.Context, target string) (time.Time, error) {
	if s.closed.Load() {
		return time.Time{}, errClosed
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ns, err := s.client.Get(cctx, s.goneKey(target)).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, s.failed("replica gone at", err)
	}
	return time.Unix(0, ns), nil
}

var _ Flight = (*Redis)(nil)

// The recovery claim of a session: one key in the session's hash slot.
func (s *Redis) claimKey(id string) string { return s.prefix + "r:{" + id + "}" }

var scriptRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

var scriptRenew = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)

// claimLease is how long a recovery claim outlives its holder: the holder
// renews it every third of it while the recovery runs (for at most the
// claim's ttl), so the claim of a plugin process that died mid-recovery (a
// crash, or a Kong reload stopping the old process while a recovery through
// Kong's balancer awaited its answer) frees the session within the lease,
// not the whole ttl. A variable for the tests.
var claimLease = 3 * time.Second

// Claim implements Flight with SET NX PX and a renewed lease: the claim
// ends at release, after ttl, or within claimLease of its holder's death.
func (s *Redis) Claim(ctx context.Context, id string, ttl time.Duration) (func(), bool, error) {
	if s.closed.Load() {
		return nil, false, errClosed
	}
	token := s.tag + strconv.FormatUint(rand.Uint64(), 36)
	lease := min(claimLease, ttl)
	key := s.claimKey(id)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	ok, err := s.client.SetNX(cctx, key, token, lease).Result()
	cancel()
	if err != nil {
		return nil, false, s.failed("claim", err)
	}
	if !ok {
		return nil, false, nil
	}
	stop := make(chan struct{})
	if lease < ttl {
		go s.renewClaim(key, token, time.Now().Add(ttl), lease, stop)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			rctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			_ = scriptRelease.Run(rctx, s.client, []string{key}, token).Err()
		})
	}
	return release, true, nil
}

// renewClaim keeps the claim key (holding token) alive, a lease at a time,
// until stop, the claim's end, the store's Close, or the claim is found
// lost (expired under a stalled process, then taken by another).
func (s *Redis) renewClaim(key, token string, end time.Time, lease time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			left := end.Sub(now)
			if left <= 0 {
				return
			}
			cctx, cancel := context.WithTimeout(s.ctx, s.timeout)
			held, err := scriptRenew.Run(cctx, s.client, []string{key}, token, min(lease, left).Milliseconds()).Int()
			cancel()
			if err == nil && held == 0 {
				return
			}
		}
	}
}

// AwaitWrite implements Flight: it reads id from Redis (not the cache),
// then wakes on the events of every node's writes to id.
func (s *Redis) AwaitWrite(ctx context.Context, id string, wait time.Duration, done func(Record) bool) (Record, bool, error) {
	if s.closed.Load() {
		return Record{}, false, errClosed
	}
	w := s.waits.add(id)
	defer s.waits.remove(id, w)
	if s.cache != nil {
		s.cache.invalidate(id)
	}
	rec, ok, err := s.fetch(ctx, id)
	if err != nil || (ok && done(rec)) {
		return rec, ok, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case v := <-w.ch:
			if r, err := decodeRecord(v); err == nil && done(r) {
				return r, true, nil
			}
		case <-t.C:
			rec, ok, err := s.fetch(ctx, id)
			return rec, ok && done(rec), err
		case <-ctx.Done():
			return Record{}, false, ctx.Err()
		}
	}
}

// String names the store by address and prefix (never credentials), and
// keeps fmt from reading its atomics.
func (s *Redis) String() string { return s.desc }

// Stats returns the store's counters.
func (s *Redis) Stats() RedisStats {
	st := RedisStats{
		RoundTrips:    s.roundTrips.Load(),
		Subscriptions: s.subscriptions.Load(),
		Subscribed:    s.subscribed.Load(),
	}
	if s.cache != nil {
		st.Cached = s.cache.len()
	}
	return st
}

// Close implements Store. It is idempotent.
func (s *Redis) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.mu.Lock()
	if s.ps != nil {
		_ = s.ps.Close() // unblocks the receive loop
	}
	s.mu.Unlock()
	<-s.done
	return s.client.Close()
}

// failed is unavailable for a command that failed, after asking a Cluster
// client to re-read the cluster's slot map.
func (s *Redis) failed(op string, err error) error {
	s.reloadCluster()
	return unavailable(op, err)
}

// reloadCluster makes a Cluster client re-read the slot map soon (go-redis
// runs at most one such read at a time, 200 ms apart). go-redis re-reads it
// by itself only on a MOVED answer, which a dead master never sends, or
// once its copy is 60 s old: after a failover, the slots of the dead master
// would keep going to its address for up to a minute.
func (s *Redis) reloadCluster() {
	if cc, ok := s.client.(*redis.ClusterClient); ok && !s.closed.Load() {
		cc.ReloadState(context.Background())
	}
}

// unavailable wraps a backend failure. go-redis errors name addresses and
// commands, never credentials.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type countHook struct{ n *atomic.Uint64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// Record encoding, the one place a Record is serialized. Version 1 (no
// recovery data): state letter, creation time in unix milliseconds, target
// length, then target and consumer back to back, e.g.
// "A1732350000000|13|10.0.0.1:8080consumer-id". Version 2 adds the
// recovery fields: a ';' after the time, then the lengths of target,
// consumer, init, upstream and alias, then the six strings back to back
// (service last), e.g. "A1732350000000;13|1|2|0|0|10.0.0.1:8080c{}svc". The lengths make
// any bytes safe in any string; the state letter first lets scripts rewrite
// it. Records without recovery data are written as version 1, which every
// release reads.
func encodeRecord(r Record) string {
	v2 := r.Init != "" || r.Upstream != "" || r.Alias != "" || r.Service != ""
	var b strings.Builder
	b.Grow(48 + len(r.Target) + len(r.Consumer) + len(r.Init) + len(r.Upstream) + len(r.Alias) + len(r.Service))
	b.WriteString(stateLetter(r.State))
	b.WriteString(strconv.FormatInt(r.Created.UnixMilli(), 10))
	if !v2 {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(r.Target)))
		b.WriteByte('|')
		b.WriteString(r.Target)
		b.WriteString(r.Consumer)
		return b.String()
	}
	b.WriteByte(';')
	for _, f := range [...]string{r.Target, r.Consumer, r.Init, r.Upstream, r.Alias} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte('|')
	}
	for _, f := range [...]string{r.Target, r.Consumer, r.Init, r.Upstream, r.Alias, r.Service} {
		b.WriteString(f)
	}
	return b.String()
}

var errBadRecord = errors.New("malformed record")

func decodeRecord(v string) (Record, error) {
	if len(v) < 1 {
		return Record{}, errBadRecord
	}
	var r Record
	switch v[0] {
	case 'A':
		r.State = Active
	case 'L':
		r.State = Lost
	case 'E':
		r.State = Ended
	default:
		return Record{}, errBadRecord
	}
	end := strings.IndexAny(v[1:], "|;")
	if end < 0 {
		return Record{}, errBadRecord
	}
	ms, err := strconv.ParseInt(v[1:1+end], 10, 64)
	if err != nil {
		return Record{}, errBadRecord
	}
	r.Created = time.UnixMilli(ms)
	v2 := v[1+end] == ';'
	rest := v[2+end:]
	fields := 1
	if v2 {
		fields = 5
	}
	var lens [5]int
	for i := range fields {
		l, tail, ok := strings.Cut(rest, "|")
		n, err := strconv.Atoi(l)
		if !ok || err != nil || n < 0 {
			return Record{}, errBadRecord
		}
		lens[i], rest = n, tail
	}
	var out [5]string
	for i := range fields {
		if lens[i] > len(rest) {
			return Record{}, errBadRecord
		}
		out[i], rest = rest[:lens[i]], rest[lens[i]:]
	}
	if !v2 {
		r.Target, r.Consumer = out[0], rest
		return r, nil
	}
	r.Target, r.Consumer, r.Init, r.Upstream, r.Alias, r.Service = out[0], out[1], out[2], out[3], out[4], rest
	return r, nil
}

func stateLetter(st State) string {
	switch st {
	case Lost:
		return "L"
	case Ended:
		return "E"
	default:
		return "A"
	}
}
