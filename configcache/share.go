package configcache

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
)

// Region sharing through a JetStream KV bucket.
//
// Keys of the bucket (h = wire.KeyHash of the SDK key, f = v1 or v2):
//
//	rs.<h>.<f>     the rule set: valueMagic, time (int64 BE), checksum length (uint16 BE), checksum,
//	               then the payload gzip-compressed (a 430 kB rule set is ~40 kB on the wire).
//	lease.<h>.<f>  "<instance id> <last sync, unix ms>": who polls Statsig for (h, f).
//	lease.<h>.ids  the same for h's ID lists.
//	ids.<h>        the region's manifest of h's ID lists, whose bytes are in the object store
//	               <bucket>_idlists (see idshare.go).
//
// A proxy takes a free lease with Create (fails if the key exists), renews its own with Update at
// the revision it last wrote, and takes over an expired one (last written more than lease_ttl ago)
// with Update at the revision it read: JetStream's per-subject sequence check lets exactly one of
// several contenders win. The holder polls Statsig and publishes new rule sets; the others watch
// rs.> and install what the holder publishes, so Statsig sees one poller per region.
const valueMagic = "SGE1"

// kvReadTimeout bounds the KV read of a cold load, so that a slow bucket leaves the rest of the
// request's time to Statsig.
const kvReadTimeout = 2 * time.Second

// errNATSDown is the lease error while the connection is down: KV calls are not even tried then,
// since nats.go would hold them until their time-out (seconds per key and poll, and a cold load
// would wait longer than an SDK does).
var errNATSDown = errors.New("not connected to NATS")

type share struct {
	c        *Cache
	kv       jetstream.KeyValue
	nc       *nats.Conn // nil when unknown: then the connection is assumed up
	id       string
	ttl      time.Duration
	maxValue int
	watcher  jetstream.KeyWatcher
	done     chan struct{}

	// ID lists (idshare.go); obs is nil when the object store could not be opened: then every
	// proxy fetches ID lists from Statsig itself, as without sharing.
	obs       jetstream.ObjectStore
	objTTL    time.Duration // the object store's max age; 0: objects never expire
	idWatcher jetstream.KeyWatcher
}

func openShare(ctx context.Context, c *Cache, js jetstream.JetStream, cfg config.Share, stream config.Stream, maxValue int) (*share, error) {
	var placement *jetstream.Placement
	if p := stream.Placement; !p.Empty() {
		// On the servers the event streams use: a region's JetStream data in one place.
		placement = &jetstream.Placement{Cluster: p.Cluster, Tags: append([]string(nil), p.Tags...)}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "sigedge: rule sets shared by the proxies of a region, and their poll leases",
		History:     1,
		Storage:     jetstream.FileStorage, // survives a restart of the embedded server
		Replicas:    max(1, stream.Replicas),
		Placement:   placement,
	})
	if err != nil {
		return nil, fmt.Errorf("configcache: KV bucket %s: %w", cfg.Bucket, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r == ' ' {
			return '_'
		}
		return r
	}, host)
	s := &share{
		c:        c,
		kv:       kv,
		nc:       js.Conn(),
		id:       host + "/" + hex.EncodeToString(rnd[:]),
		ttl:      cfg.LeaseTTL,
		maxValue: maxValue - 4096, // room for the message's headers
		done:     make(chan struct{}),
	}
	s.watcher, err = kv.Watch(c.ctx, "rs.>", jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("configcache: watch KV bucket %s: %w", cfg.Bucket, err)
	}
	c.wg.Add(1)
	go s.followPuts(s.watcher, s.installShared)
	c.logger.Info("sharing rule sets through JetStream KV", "bucket", cfg.Bucket, "instance", s.id, "lease_ttl", s.ttl)
	if err := s.openIDLists(ctx, js, cfg, stream, placement); err != nil {
		// Rule sets are still shared; ID lists are fetched by every proxy, as without sharing.
		c.logger.Error("cannot share ID lists through JetStream; each proxy fetches them from Statsig", "err", err)
	}
	return s, nil
}

// down reports whether the NATS connection is known to be down (disconnected or reconnecting).
func (s *share) down() bool { return s.nc != nil && !s.nc.IsConnected() }

func dataKey(hash string, f Format) string { return "rs." + hash + "." + f.String() }

// leaseKey names the lease of one poller: a format (v1, v2) or idListLease.
func leaseKey(hash, name string) string { return "lease." + hash + "." + name }

func parseDataKey(k string) (hash string, f Format, ok bool) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 || parts[0] != "rs" {
		return "", 0, false
	}
	switch parts[2] {
	case "v1":
		f = FormatV1
	case "v2":
		f = FormatV2
	default:
		return "", 0, false
	}
	return parts[1], f, true
}

func (s *share) stopWatch() {
	if s.down() {
		// Unsubscribing waits for JetStream's answer until its time-out (5 s per watcher) while the
		// connection is down; the watchers end with the cache's context, their subscriptions with the
		// connection.
		return
	}
	if s.watcher != nil {
		_ = s.watcher.Stop()
	}
	if s.idWatcher != nil {
		_ = s.idWatcher.Stop()
	}
}

// followPuts hands every value written to the bucket under w's keys to install, until the
// cache closes or the watcher stops. Deletions and purges carry nothing to install.
func (s *share) followPuts(w jetstream.KeyWatcher, install func(jetstream.KeyValueEntry)) {
	defer s.c.wg.Done()
	for {
		select {
		case <-s.c.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				install(e)
			}
		}
	}
}

// installShared installs a rule set another proxy published, if this proxy serves its
// (key, format).
func (s *share) installShared(e jetstream.KeyValueEntry) {
	hash, f, ok := parseDataKey(e.Key())
	if !ok {
		return
	}
	v, ok := s.c.byHash.Load(hash)
	if !ok {
		return
	}
	sl := v.(*keyState).slot(f)
	if !sl.active.Load() {
		return
	}
	t, _, _, err := decodeValue(e.Value(), false)
	if err != nil {
		s.c.logger.Warn("ignoring a malformed rule set in the KV bucket", "kv_key", e.Key(), "err", err)
		return
	}
	if cur := sl.entry.Load(); cur != nil && t <= cur.Time {
		sl.synced.Store(time.Now().UnixNano())
		return // our own publication, or nothing new
	}
	entry, err := s.decodeEntry(e.Value(), f)
	if err != nil {
		s.c.m.updates.WithLabelValues(f.String(), "share", "rejected").Inc()
		s.c.logger.Error("the region's poller published an unusable rule set; keeping the previous one", "key", hash, "format", f.String(), "err", err)
		return
	}
	if sl.install(entry, time.Now()) {
		s.c.m.updates.WithLabelValues(f.String(), "share", "updated").Inc()
		s.c.logger.Info("rule set updated from the region's KV bucket", "key", hash, "format", f.String(), "time", entry.Time)
	}
}

// read returns the rule set the bucket holds for (hash, f), or nil.
func (s *share) read(ctx context.Context, hash string, f Format) *Entry {
	if s.down() {
		s.c.m.share.WithLabelValues("kv_miss").Inc()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, kvReadTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, dataKey(hash, f))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.c.logger.Warn("cannot read the KV bucket; asking Statsig", "key", hash, "format", f.String(), "err", err)
		}
		s.c.m.share.WithLabelValues("kv_miss").Inc()
		return nil
	}
	entry, err := s.decodeEntry(e.Value(), f)
	if err != nil {
		s.c.logger.Warn("ignoring an unusable rule set in the KV bucket", "key", hash, "format", f.String(), "err", err)
		s.c.m.share.WithLabelValues("kv_miss").Inc()
		return nil
	}
	s.c.m.share.WithLabelValues("kv_hit").Inc()
	return entry
}

func (s *share) decodeEntry(v []byte, f Format) (*Entry, error) {
	_, _, gz, err := decodeValue(v, true)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	payload, err := io.ReadAll(io.LimitReader(zr, maxUpstreamBody+1))
	if err != nil {
		return nil, err
	}
	if len(payload) > maxUpstreamBody {
		return nil, errors.New("rule set too large")
	}
	e, err := s.c.buildEntry(payload, f, SourceShare)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// publish stores e in the bucket unless the bucket already holds the same or a newer rule set.
func (s *share) publish(ctx context.Context, hash string, f Format, e *Entry) {
	v := encodeValue(e)
	if len(v) > s.maxValue {
		s.c.m.share.WithLabelValues("too_large").Inc()
		s.c.logger.Warn("rule set too large for the KV bucket; other proxies will fetch it themselves",
			"key", hash, "format", f.String(), "compressed_bytes", len(v), "max", s.maxValue)
		return
	}
	if s.down() {
		s.c.m.share.WithLabelValues("publish_failed").Inc()
		return // the next poll after the reconnect publishes again
	}
	k := dataKey(hash, f)
	cur, err := s.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = s.kv.Create(ctx, k, v)
	case err != nil:
	default:
		if t, _, _, derr := decodeValue(cur.Value(), false); derr == nil && t >= e.Time {
			s.c.m.share.WithLabelValues("publish_skipped").Inc()
			return
		}
		_, err = s.kv.Update(ctx, k, v, cur.Revision())
	}
	if err != nil {
		// A lost race means another proxy published at the same moment: fine either way.
		s.c.m.share.WithLabelValues("publish_failed").Inc()
		s.c.logger.Warn("cannot publish rule set to the KV bucket", "key", hash, "format", f.String(), "err", err)
		return
	}
	s.c.m.share.WithLabelValues("published").Inc()
}

// leaseHold is this proxy's hold on one poll lease.
type leaseHold struct {
	rev      atomic.Uint64 // revision this proxy last wrote; 0 when not held
	kvErrors int           // consecutive lease errors; the key's poll goroutine only
}

// lead acquires or renews this proxy's poll lease for (key, f). It reports whether this proxy
// should poll Statsig. When the bucket cannot be reached it answers true: polling ourselves is
// better than serving rules that silently go stale.
func (s *share) lead(ks *keyState, f Format) bool {
	sl := ks.slot(f)
	synced := time.Unix(0, sl.synced.Load()).UnixMilli()
	follow := func(syncedMs int64) {
		// The holder confirmed the rule set at syncedMs: that is how current ours is too.
		sl.synced.Store(time.UnixMilli(syncedMs).UnixNano())
	}
	return s.hold(leaseKey(ks.hash, f.String()), &sl.lease, synced, follow, s.c.logger.With("key", ks.hash, "format", f.String()))
}

// hold acquires or renews the lease lk for h; synced (unix ms) is written into the lease for the
// followers, and follow, when not nil, gets the holder's value while another proxy holds it.
func (s *share) hold(lk string, h *leaseHold, synced int64, follow func(syncedMs int64), log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(s.c.ctx, 5*time.Second)
	defer cancel()
	val := []byte(s.id + " " + strconv.FormatInt(synced, 10))
	if s.down() {
		s.leaseError(h, log, "cannot reach the poll lease", errNATSDown)
		return true
	}
	if rev := h.rev.Load(); rev != 0 {
		nrev, err := s.kv.Update(ctx, lk, val, rev)
		if err == nil {
			h.rev.Store(nrev)
			h.kvErrors = 0
			return true
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			s.leaseError(h, log, "cannot renew the poll lease", err)
			return true
		}
		h.rev.Store(0)
		s.c.m.share.WithLabelValues("lease_lost").Inc()
		log.Info("poll lease taken over by another proxy")
	}
	e, err := s.kv.Get(ctx, lk)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := s.kv.Create(ctx, lk, val)
		if err == nil {
			h.rev.Store(rev)
			s.c.m.share.WithLabelValues("lease_acquired").Inc()
			log.Info("acquired the poll lease: this proxy polls Statsig for the region")
			return true
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false // another proxy was faster
		}
		s.leaseError(h, log, "cannot take the poll lease", err)
		return true
	}
	if err != nil {
		s.leaseError(h, log, "cannot read the poll lease", err)
		return true
	}
	h.kvErrors = 0
	holder, syncedMs := parseLease(e.Value())
	if holder != s.id && time.Since(e.Created()) < s.ttl {
		if syncedMs > 0 && follow != nil {
			follow(syncedMs)
		}
		return false
	}
	rev, err := s.kv.Update(ctx, lk, val, e.Revision())
	if err != nil {
		return false // another proxy took it over first
	}
	h.rev.Store(rev)
	s.c.m.share.WithLabelValues("lease_acquired").Inc()
	log.Info("took over the poll lease", "previous_holder", holder, "last_renewed", e.Created())
	return true
}

// leaseError counts a failed lease operation and logs the first of a series and one in 30 after
// it (a NATS outage would otherwise log once per key and poll). Polling goes on meanwhile.
func (s *share) leaseError(h *leaseHold, log *slog.Logger, what string, err error) {
	s.c.m.share.WithLabelValues("lease_error").Inc()
	h.kvErrors++
	if h.kvErrors == 1 || h.kvErrors%30 == 0 {
		log.Warn(what+"; polling Statsig from this proxy meanwhile", "err", err, "errors", h.kvErrors)
	}
}

// release gives up ks's leases so another proxy takes over at its next poll, not after lease_ttl.
func (s *share) release(ks *keyState) {
	holds := map[string]*leaseHold{idListLease: &ks.ids.lease}
	for _, f := range formats {
		holds[f.String()] = &ks.slot(f).lease
	}
	for name, h := range holds {
		rev := h.rev.Swap(0)
		if rev == 0 || s.down() {
			continue // not held, or cannot be reached: it expires after lease_ttl
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.kv.Delete(ctx, leaseKey(ks.hash, name), jetstream.LastRevision(rev))
		cancel()
		if err != nil {
			s.c.logger.Debug("cannot release the poll lease; it expires after lease_ttl", "key", ks.hash, "lease", name, "err", err)
		}
	}
}

func parseLease(v []byte) (holder string, syncedMs int64) {
	h, ms, _ := strings.Cut(string(v), " ")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return h, n
}

func encodeValue(e *Entry) []byte {
	cs := e.Checksum
	if len(cs) > 0xffff {
		cs = cs[:0xffff]
	}
	b := make([]byte, 0, len(valueMagic)+8+2+len(cs)+len(e.Gzip))
	b = append(b, valueMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = binary.BigEndian.AppendUint16(b, uint16(len(cs)))
	b = append(b, cs...)
	return append(b, e.Gzip...)
}

// decodeValue splits a KV value; with body false only the header is checked.
func decodeValue(v []byte, body bool) (t int64, checksum string, gz []byte, err error) {
	if len(v) < len(valueMagic)+10 || string(v[:len(valueMagic)]) != valueMagic {
		return 0, "", nil, errors.New("not a sigedge rule-set value")
	}
	p := v[len(valueMagic):]
	t = int64(binary.BigEndian.Uint64(p))
	n := int(binary.BigEndian.Uint16(p[8:]))
	p = p[10:]
	if len(p) < n {
		return 0, "", nil, errors.New("truncated value")
	}
	checksum = string(p[:n])
	if body {
		gz = p[n:]
	}
	return t, checksum, gz, nil
}
