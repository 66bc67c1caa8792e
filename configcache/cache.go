// Package configcache keeps the rule sets (download_config_specs payloads) and ID lists the proxy
// serves to Statsig server SDKs, fresh from Statsig, from the region's other proxies, or from files.
//
// The interface is small:
//
//	c, err := configcache.New(ctx, configcache.Options{Config: cfg, Logger: l, Registry: reg, JetStream: js})
//	e, err := c.Get(ctx, key, configcache.FormatV2) // *Entry: Payload, Gzip, Time, ETag, Model (immutable)
//	m, err := c.RuleSet(ctx, key)                   // the compiled Model (*evalcore.RuleSet)
//	ev, err := c.Evaluator(ctx, key)                // an *evalcore.Evaluator that also sees ID lists
//	ids, err := c.IDLists(ctx, key)                 // *IDListSet: manifest, file bytes, membership
//	ids, ok := c.IDListsByHash(wire.KeyHash(key))   // for ID-list file downloads, which carry no key
//	c.Ready(); c.Close()
//
// How entries are kept:
//
//   - One entry per (SDK key, format). The first request for an unknown key fetches it once
//     (concurrent first requests share one fetch) and from then on the key is polled every
//     rulesets.poll_interval ± poll_jitter with sinceTime; {"has_updates":false} keeps the entry. Each
//     format is fetched from Statsig's own endpoint (/v1 or /v2), only once some SDK asked for it:
//     Statsig's bytes are exactly what every SDK was built against (v1 carries hashed_sdk_key_used,
//     which legacy SDKs validate; v2 carries checksum, param_stores, …), so no conversion can make an
//     SDK disagree with Statsig. Offline files, which exist in one format only, are converted.
//   - A new entry replaces the old one atomically, and only if it parses, is a rule set, compiles,
//     and is not older. Upstream errors and time-outs keep the old entry (stale is served); a per-key
//     circuit breaker stops hammering a failing Statsig. 401/403 marks the key invalid for
//     rulesets.invalid_key_ttl (answered without asking Statsig again); a cold key that cannot be
//     fetched is not retried for one poll interval, so SDK traffic is never amplified upstream.
//   - Keys are held in an LRU bounded by limits.max_sdk_keys; a key no SDK asked for within
//     rulesets.idle_timeout stops being polled and is evicted. Only keys that Statsig accepted enter
//     the LRU, so random keys cannot push real ones out.
//   - With rulesets.share.enabled, proxies of a region share entries in a JetStream KV bucket: for
//     each (key, format) one proxy holds a lease and polls Statsig, the others follow the bucket.
//     ID lists are shared the same way (a lease per key, a manifest in the KV, the bytes in a
//     JetStream object store), so a restarted proxy serves them from the region while Statsig is
//     down. KV and object names use wire.KeyHash; the secret key itself is never stored.
//   - Offline keys (rulesets.offline) are served from files, in both formats, reloaded when the
//     file changes, and never polled upstream.
//
// Secret keys are never logged: logs and metrics name a key by wire.KeyHash.
package configcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
	"golang.org/x/sync/singleflight"

	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
)

// Options configure a Cache.
type Options struct {
	// Config is the validated configuration (rulesets, upstream, limits, allowed_sdk_keys, nats).
	Config config.Config
	// Logger receives the cache's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the cache's metrics; nil keeps them unregistered.
	Registry prometheus.Registerer
	// Version is sent upstream in the User-Agent.
	Version string
	// Compile compiles payloads into Models; nil means EvalCompile (evalcore.Compile).
	Compile Compiler
	// Convert converts offline files to the other format; nil means EvalConvert (evalcore).
	Convert Converter
	// JetStream enables region sharing when rulesets.share.enabled is true; nil disables it.
	JetStream jetstream.JetStream
	// EvaluatorOptions is the template of the evaluators Evaluator builds (countries, clock, user-agent
	// parser); the cache sets Environment (from rulesets.environments) and IDLists per key.
	EvaluatorOptions evalcore.EvaluatorOptions
	// MaxShareValue is the largest KV value the servers accept (the connection's max payload);
	// 0 means 1 MiB, the NATS default.
	MaxShareValue int
	// Transport overrides the upstream HTTP transport (tests).
	Transport http.RoundTripper
	// OfflineCheckInterval is how often offline files are checked for changes; 0 means 1s.
	OfflineCheckInterval time.Duration
	// BreakerFailures is how many consecutive upstream failures of a key open its breaker; 0 means 3.
	BreakerFailures int
	// BreakerOpen is how long an open breaker skips polls; 0 means 3 poll intervals.
	BreakerOpen time.Duration
}

// Cache holds rule sets and ID lists per SDK key. It is safe for concurrent use.
type Cache struct {
	cfg      config.Config
	logger   *slog.Logger
	compile  Compiler
	convert  Converter
	evalOpts evalcore.EvaluatorOptions
	evals    evaluators
	up       *upstream
	m        *metrics

	breakerFailures int
	breakerOpen     time.Duration
	offlineEvery    time.Duration

	offline map[string]*offlineKey // fixed at New
	allowed map[string]bool        // nil: every server key

	keys      *lru.Cache[string, *keyState] // bounds the keys held and picks whom to evict
	live      sync.Map                      // key → *keyState: the lock-free read path of keys
	byHash    sync.Map                      // wire.KeyHash(key) → *keyState
	negatives *lru.Cache[string, negative]
	sf        singleflight.Group
	share     *share

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup
}

// negative is a remembered failure: an invalid key, or a cold fetch that failed.
type negative struct {
	until time.Time
	err   error
}

// New builds the cache: it loads the offline rule sets (a file that cannot be loaded is reported by
// Ready, not here), opens the KV bucket when sharing is on, and starts the background work.
func New(ctx context.Context, opts Options) (*Cache, error) {
	cfg := opts.Config
	c := &Cache{
		cfg:             cfg,
		logger:          opts.Logger,
		compile:         opts.Compile,
		convert:         opts.Convert,
		evalOpts:        opts.EvaluatorOptions,
		evals:           evaluators{m: map[string]cachedEvaluator{}},
		breakerFailures: opts.BreakerFailures,
		breakerOpen:     opts.BreakerOpen,
		offlineEvery:    opts.OfflineCheckInterval,
		offline:         map[string]*offlineKey{},
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.logger = c.logger.With("component", "configcache")
	if c.compile == nil {
		c.compile = EvalCompile
	}
	if c.convert == nil {
		c.convert = EvalConvert
	}
	if c.breakerFailures <= 0 {
		c.breakerFailures = 3
	}
	if c.breakerOpen <= 0 {
		c.breakerOpen = 3 * cfg.RuleSets.PollInterval
	}
	if c.offlineEvery <= 0 {
		c.offlineEvery = time.Second
	}
	if len(cfg.AllowedSDKKeys) > 0 {
		c.allowed = map[string]bool{}
		for _, k := range cfg.AllowedSDKKeys {
			c.allowed[k] = true
		}
	}
	size := max(1, cfg.Limits.MaxSDKKeys-len(cfg.RuleSets.Offline))
	var err error
	c.keys, err = lru.NewWithEvict(size, c.onEvict)
	if err != nil {
		return nil, fmt.Errorf("configcache: %w", err)
	}
	c.negatives, err = lru.New[string, negative](max(1024, 4*cfg.Limits.MaxSDKKeys))
	if err != nil {
		return nil, fmt.Errorf("configcache: %w", err)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c.m = newMetrics(reg, c)
	c.up = newUpstream(cfg.Upstream.ConfigCDN, cfg.Upstream.API, cfg.Upstream.Timeout, opts.Version, opts.Transport, c.m)
	c.ctx, c.cancel = context.WithCancel(context.Background())

	for _, o := range cfg.RuleSets.Offline {
		ok := &offlineKey{key: o.SDKKey, hash: wire.KeyHash(o.SDKKey), file: o.File}
		c.offline[o.SDKKey] = ok
		c.loadOffline(ok)
	}
	if len(c.offline) > 0 {
		c.wg.Add(1)
		go c.watchOffline()
	}

	if cfg.RuleSets.Share.Enabled && opts.JetStream != nil {
		maxValue := opts.MaxShareValue
		if maxValue <= 0 {
			maxValue = 1 << 20
		}
		c.share, err = openShare(ctx, c, opts.JetStream, cfg.RuleSets.Share, cfg.NATS.Stream, maxValue)
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Get returns key's rule set in format f: from memory, else fetched now (from the region's KV
// bucket when shared, else from Statsig). Errors: ErrUnknownKey, ErrNotAllowed, ErrInvalidKey,
// ErrUnavailable, ErrFormatUnavailable (all wrapped; use errors.Is).
func (c *Cache) Get(ctx context.Context, key string, f Format) (*Entry, error) {
	if !f.valid() {
		return nil, fmt.Errorf("configcache: unknown format %d", int(f))
	}
	if o := c.offline[key]; o != nil {
		return c.getOffline(o, f)
	}
	if err := c.allow(key); err != nil {
		c.m.lookups.WithLabelValues(f.String(), "refused").Inc()
		return nil, err
	}
	// The hot path takes no lock: a held key cannot be invalid (markInvalid drops it first).
	if ks, ok := c.lookup(key); ok {
		if e := ks.slot(f).entry.Load(); e != nil {
			c.m.hits[f].Inc()
			return e, nil
		}
	}
	if err := c.admit(key); err != nil {
		c.m.lookups.WithLabelValues(f.String(), "refused").Inc()
		return nil, err
	}
	ci := clientInfoFrom(ctx)
	return loadOnce(ctx, &c.sf, "dcs|"+f.String()+"|"+key, func() (*Entry, error) { return c.coldLoad(key, f, ci) })
}

// loadOnce runs load once for all concurrent callers with the same id and waits for its result, or
// until ctx is done; a caller that gives up leaves the load running for the others.
func loadOnce[T any](ctx context.Context, sf *singleflight.Group, id string, load func() (T, error)) (T, error) {
	ch := sf.DoChan(id, func() (any, error) { return load() })
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero T
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// RuleSet returns the compiled rule set of key for evaluations: the v2 entry when held, else the
// v1 entry, else it fetches v2 (the format server-core SDKs use, so usually already held). With
// the default compiler the Model is an *evalcore.RuleSet; Evaluator wraps it ready to use.
func (c *Cache) RuleSet(ctx context.Context, key string) (Model, error) {
	e, _, err := c.modelEntry(ctx, key)
	if err != nil {
		return nil, err
	}
	return e.Model, nil
}

// Ready reports whether every offline rule set is loaded (the "rulesets" readiness check).
func (c *Cache) Ready() error {
	var errs []error
	for _, o := range c.offline {
		if !o.loaded.Load() {
			errs = append(errs, fmt.Errorf("offline rule set %s for key %s not loaded: %v", o.file, o.hash, c.offlineErr(o)))
		}
	}
	return errors.Join(errs...)
}

// Close stops polling and watching, releases this proxy's poll leases, and waits for background
// work to end. The cache must not be used afterwards.
func (c *Cache) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.share != nil {
		c.share.stopWatch()
	}
	c.keys.Purge() // stops every key's goroutine (onEvict), which releases its leases
	c.cancel()
	c.wg.Wait()
}

// allow checks that a non-offline key may be served at all.
func (c *Cache) allow(key string) error {
	if !wire.IsServerKey(key) {
		return ErrUnknownKey
	}
	if c.allowed != nil && !c.allowed[key] {
		return ErrNotAllowed
	}
	return nil
}

// admit checks a non-offline key before anything is fetched for it: allow, and not refused lately.
func (c *Cache) admit(key string) error {
	if err := c.allow(key); err != nil {
		return err
	}
	if n, ok := c.negatives.Get("invalid|" + key); ok {
		if time.Now().Before(n.until) {
			return ErrInvalidKey
		}
		c.negatives.Remove("invalid|" + key)
	}
	return nil
}

// coldLoad fetches a (key, format) no entry is held for. It runs once per key and format at a time.
func (c *Cache) coldLoad(key string, f Format, ci ClientInfo) (*Entry, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if v, ok := c.live.Load(key); ok {
		if e := v.(*keyState).slot(f).entry.Load(); e != nil { // filled while this caller waited
			return e, nil
		}
	}
	failKey := "cold|" + f.String() + "|" + key
	if n, ok := c.negatives.Get(failKey); ok && time.Now().Before(n.until) {
		c.m.lookups.WithLabelValues(f.String(), "unavailable").Inc()
		return nil, n.err
	}
	hash := wire.KeyHash(key)
	log := c.logger.With("key", hash, "format", f.String())
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Upstream.Timeout+5*time.Second)
	defer cancel()

	if c.share != nil {
		if e := c.share.read(ctx, hash, f); e != nil {
			ks := c.ensureKey(key)
			s := ks.slot(f)
			s.activate(ci)
			s.install(e, e.Received)
			c.m.lookups.WithLabelValues(f.String(), "miss").Inc()
			log.Info("rule set loaded from the region's KV bucket", "time", e.Time, "bytes", len(e.Payload))
			return s.entry.Load(), nil
		}
	}

	began := time.Now()
	body, err := c.up.fetchDCS(ctx, key, f, 0, ci)
	if refused(err) {
		c.markInvalid(key, err)
		c.m.lookups.WithLabelValues(f.String(), "refused").Inc()
		return nil, ErrInvalidKey
	}
	var e *Entry
	if err == nil {
		e, err = c.buildEntry(body, f, SourceUpstream)
		if err != nil {
			err = fmt.Errorf("Statsig sent an unusable rule set: %w", err)
		}
	}
	if err != nil {
		err = fmt.Errorf("%w: no cached rule set and %v", ErrUnavailable, err)
		// Remember the failure for one poll interval: SDK retries must not turn into upstream calls.
		c.negatives.Add(failKey, negative{until: time.Now().Add(c.cfg.RuleSets.PollInterval), err: err})
		c.m.lookups.WithLabelValues(f.String(), "unavailable").Inc()
		log.Warn("cannot fetch rule set for a new key; SDKs get 503 until it succeeds", "err", err)
		return nil, err
	}
	ks := c.ensureKey(key)
	s := ks.slot(f)
	s.activate(ci)
	s.install(e, time.Now())
	c.m.lookups.WithLabelValues(f.String(), "miss").Inc()
	log.Info("rule set fetched from Statsig", "time", e.Time, "bytes", len(e.Payload), "took", time.Since(began).Round(time.Millisecond))
	if c.share != nil {
		c.share.publish(ctx, hash, f, e)
	}
	return s.entry.Load(), nil
}

// markInvalid remembers that Statsig refused key and drops everything held for it.
func (c *Cache) markInvalid(key string, cause error) {
	c.negatives.Add("invalid|"+key, negative{until: time.Now().Add(c.cfg.RuleSets.InvalidKeyTTL), err: cause})
	c.keys.Remove(key)
	c.logger.Warn("Statsig refused the SDK key; answering 401 without asking Statsig for a while",
		"component", "configcache", "key", wire.KeyHash(key), "for", c.cfg.RuleSets.InvalidKeyTTL, "err", cause)
}

func (c *Cache) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// lookup returns a held key's state and records the use.
func (c *Cache) lookup(key string) (*keyState, bool) {
	v, ok := c.live.Load(key)
	if !ok {
		return nil, false
	}
	ks := v.(*keyState)
	now := time.Now().UnixNano()
	// Recording every request would bounce a cache line between cores and lock the LRU: once a
	// second per key is precise enough for idle_timeout and for the LRU's order.
	if now-ks.lastUsed.Load() > int64(time.Second) {
		ks.lastUsed.Store(now)
		c.keys.Get(key)
	}
	return ks, true
}

// ensureKey returns key's state, creating it (and its poll goroutine) when absent.
func (c *Cache) ensureKey(key string) *keyState {
	if ks, ok := c.lookup(key); ok {
		return ks
	}
	ks := c.newKeyState(key)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ks // never polled; dropped with the closed cache
	}
	prev, found, _ := c.keys.PeekOrAdd(key, ks)
	if found {
		return prev
	}
	c.live.Store(key, ks)
	c.byHash.Store(ks.hash, ks)
	c.wg.Add(1)
	go c.run(ks)
	return ks
}

// onEvict runs when a key leaves the LRU (capacity, idle, invalid, Close): its goroutine stops.
func (c *Cache) onEvict(key string, ks *keyState) {
	ks.stop()
	c.live.CompareAndDelete(key, ks)
	c.byHash.CompareAndDelete(ks.hash, ks)
	c.dropEvaluator(key)
}

// keyState is everything held for one online key.
type keyState struct {
	key, hash string
	lastUsed  atomic.Int64 // unix nanoseconds of the last request
	stopOnce  sync.Once
	stopCh    chan struct{}
	breaker   *gobreaker.CircuitBreaker
	slots     [3]slot // indexed by Format
	ids       idState
}

// slot is one format of one key.
type slot struct {
	active   atomic.Bool                // some SDK asked for this format: poll it
	client   atomic.Pointer[ClientInfo] // who asked first, forwarded upstream
	entry    atomic.Pointer[Entry]
	synced   atomic.Int64 // unix nanoseconds of the last confirmation that entry is current
	mu       sync.Mutex   // serialises installs (poller and KV watcher)
	lease    leaseHold
	failures int // consecutive failed polls; poll goroutine only
}

func (c *Cache) newKeyState(key string) *keyState {
	ks := &keyState{key: key, hash: wire.KeyHash(key), stopCh: make(chan struct{})}
	ks.lastUsed.Store(time.Now().UnixNano())
	failures := uint32(c.breakerFailures)
	ks.breaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        ks.hash,
		MaxRequests: 1,
		Timeout:     c.breakerOpen,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= failures },
		// A refused key is Statsig answering, not Statsig failing.
		IsSuccessful: func(err error) bool { return err == nil || refused(err) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			c.logger.Warn("upstream circuit breaker changed state", "key", name, "from", from.String(), "to", to.String())
		},
	})
	return ks
}

func (ks *keyState) slot(f Format) *slot { return &ks.slots[f] }

func (ks *keyState) stop() { ks.stopOnce.Do(func() { close(ks.stopCh) }) }

func (s *slot) activate(ci ClientInfo) {
	if ci.SDKType != "" && s.client.Load() == nil {
		s.client.CompareAndSwap(nil, &ci)
	}
	s.active.Store(true)
}

func (s *slot) clientInfo() ClientInfo {
	if p := s.client.Load(); p != nil {
		return *p
	}
	return ClientInfo{}
}

// install publishes e unless it is older than, or the same as, the held entry. It reports whether
// e is now served.
func (s *slot) install(e *Entry, synced time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced.Store(synced.UnixNano())
	if cur := s.entry.Load(); cur != nil && (e.Time < cur.Time || e.ETag == cur.ETag) {
		return false
	}
	s.entry.Store(e)
	return true
}

// run polls one key until it is evicted or the cache closes.
func (c *Cache) run(ks *keyState) {
	defer c.wg.Done()
	if c.share != nil {
		defer c.share.release(ks)
	}
	t := time.NewTimer(c.nextWait())
	defer t.Stop()
	for {
		select {
		case <-ks.stopCh:
			return
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if idle := time.Since(time.Unix(0, ks.lastUsed.Load())); idle > c.cfg.RuleSets.IdleTimeout {
			c.logger.Info("no SDK asked for the key lately; stopped polling and evicted it", "key", ks.hash, "idle", idle.Round(time.Second))
			c.keys.Remove(ks.key)
			return
		}
		for _, f := range formats {
			if ks.slot(f).active.Load() {
				if !c.poll(ks, f) {
					return
				}
			}
		}
		if !c.syncIDListsIfDue(ks) {
			return
		}
		t.Reset(c.nextWait())
	}
}

func (c *Cache) nextWait() time.Duration {
	d := c.cfg.RuleSets.PollInterval
	if j := c.cfg.RuleSets.PollJitter; j > 0 {
		d += time.Duration(rand.Int64N(int64(2*j)+1)) - j
	}
	return d
}

// poll refreshes one (key, format) from Statsig, unless another proxy of the region holds the
// lease. It returns false when the key was dropped (Statsig refused it).
func (c *Cache) poll(ks *keyState, f Format) bool {
	s := ks.slot(f)
	if c.share != nil && !c.share.lead(ks, f) {
		return true // another proxy polls; the KV watcher brings its updates
	}
	cur := s.entry.Load()
	var since int64
	if cur != nil {
		since = cur.Time
	}
	log := c.logger.With("key", ks.hash, "format", f.String())
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Upstream.Timeout)
	defer cancel()
	res, err := ks.breaker.Execute(func() (any, error) {
		return c.up.fetchDCS(ctx, ks.key, f, since, s.clientInfo())
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		c.up.observe("dcs_"+f.String(), "breaker_open", time.Now())
		c.m.updates.WithLabelValues(f.String(), "upstream", "failed").Inc()
		return true
	}
	if refused(err) {
		c.markInvalid(ks.key, err)
		return false
	}
	if err != nil {
		s.failures++
		c.m.updates.WithLabelValues(f.String(), "upstream", "failed").Inc()
		// The first failure and then one in 30 (~5 min at 10 s): enough to see, not a flood.
		if s.failures == 1 || s.failures%30 == 0 {
			age := time.Duration(0)
			if cur != nil {
				age = time.Since(time.Unix(0, s.synced.Load())).Round(time.Second)
			}
			log.Warn("cannot refresh rule set from Statsig; serving the last good one", "err", err, "failures", s.failures, "stale_for", age)
		}
		return true
	}
	if s.failures > 0 {
		log.Info("Statsig reachable again", "after_failures", s.failures)
		s.failures = 0
	}
	body := res.([]byte)
	e, err := c.buildEntry(body, f, SourceUpstream)
	if errors.Is(err, errNoUpdates) {
		s.synced.Store(time.Now().UnixNano())
		c.m.updates.WithLabelValues(f.String(), "upstream", "unchanged").Inc()
		return true
	}
	if err != nil {
		c.m.updates.WithLabelValues(f.String(), "upstream", "rejected").Inc()
		log.Error("Statsig sent an unusable rule set; keeping the previous one", "err", err, "bytes", len(body))
		return true
	}
	if !s.install(e, time.Now()) {
		c.m.updates.WithLabelValues(f.String(), "upstream", "unchanged").Inc()
		return true
	}
	c.m.updates.WithLabelValues(f.String(), "upstream", "updated").Inc()
	log.Info("rule set updated from Statsig", "time", e.Time, "previous_time", since, "bytes", len(e.Payload))
	if c.share != nil {
		c.share.publish(ctx, ks.hash, f, e)
	}
	return true
}
