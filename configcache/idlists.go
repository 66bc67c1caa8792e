package configcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigedge/sigedge/internal/wire"
)

// IDList is one ID list as this proxy holds it: the bytes of Statsig's file read so far, which
// the proxy serves to SDKs byte for byte (they resume downloads with Range), and the membership set
// those bytes describe. It is immutable.
type IDList struct {
	// Name is the list's name, as rules reference it.
	Name string
	// FileID changes when Statsig rewrites the file; SDKs then start over from byte 0.
	FileID string
	// CreationTime is when the file was created (ms since epoch).
	CreationTime int64
	// Data is the file's content: lines "+<hashed id>" (add) and "-<hashed id>" (remove).
	Data []byte

	ids map[string]struct{}

	digestOnce sync.Once // region sharing: computed on first use, once per list
	digest     string
}

// sha is the SHA-256 digest of Data, in the object store's notation.
func (l *IDList) sha() string {
	l.digestOnce.Do(func() { l.digest = digestOf(l.Data) })
	return l.digest
}

// Size is the number of bytes held, the size the manifest announces to SDKs.
func (l *IDList) Size() int { return len(l.Data) }

// Contains reports whether the list holds id (the hashed ID the file lists: the first 8
// characters of base64(sha256(unit ID)), as evaluators compute it).
func (l *IDList) Contains(id string) bool {
	_, ok := l.ids[id]
	return ok
}

// Len is the number of IDs in the list.
func (l *IDList) Len() int { return len(l.ids) }

// IDListSet is one key's ID lists at one moment. It is immutable.
type IDListSet struct {
	// Lists by name.
	Lists map[string]*IDList
	// Synced is when Statsig was last asked, by this proxy or by the region's poller.
	Synced time.Time
}

// Contains reports whether list holds the hashed id; an unknown list holds nothing.
func (s *IDListSet) Contains(list, id string) bool {
	if s == nil {
		return false
	}
	l := s.Lists[list]
	return l != nil && l.Contains(id)
}

// Names lists the lists' names, sorted.
func (s *IDListSet) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.Lists))
	for n := range s.Lists {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var emptyIDLists = &IDListSet{Lists: map[string]*IDList{}}

// idState is the ID lists of one key.
type idState struct {
	set atomic.Pointer[IDListSet]
	mu  sync.Mutex // serialises syncs, installs of the region's copy and the ID-list lease
	// The fields below are guarded by mu.
	last      time.Time  // when Statsig was last asked, by this proxy or by the region's poller
	published *IDListSet // the set the region's store holds, as far as this proxy knows
	lease     leaseHold  // lease.<h>.ids
	fallbacks int        // consecutive follower syncs that had to ask Statsig
}

// IDLists returns key's ID lists, asking Statsig on first use (with region sharing, the region's
// copy first); from then on they are refreshed every rulesets.id_list_interval while the key is
// held. Offline keys have none.
func (c *Cache) IDLists(ctx context.Context, key string) (*IDListSet, error) {
	if c.offline[key] != nil {
		return emptyIDLists, nil
	}
	if err := c.allow(key); err != nil {
		return nil, err
	}
	if ks, ok := c.lookup(key); ok {
		if s := ks.ids.set.Load(); s != nil {
			return s, nil
		}
	}
	if err := c.admit(key); err != nil {
		return nil, err
	}
	return loadOnce(ctx, &c.sf, "ids|"+key, func() (*IDListSet, error) { return c.coldIDLists(key) })
}

// IDListsByHash returns the ID lists of the held key whose wire.KeyHash is hash. ID-list file
// downloads carry no key (legacy SDKs send none), so their URLs name the key by its hash.
func (c *Cache) IDListsByHash(hash string) (*IDListSet, bool) {
	v, ok := c.byHash.Load(hash)
	if !ok {
		return nil, false
	}
	s := v.(*keyState).ids.set.Load()
	return s, s != nil
}

func (c *Cache) coldIDLists(key string) (*IDListSet, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if v, ok := c.live.Load(key); ok {
		if s := v.(*keyState).ids.set.Load(); s != nil {
			return s, nil
		}
	}
	failKey := "ids|" + key
	if n, ok := c.negatives.Get(failKey); ok && time.Now().Before(n.until) {
		return nil, n.err
	}
	hash := wire.KeyHash(key)
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Upstream.Timeout)
	defer cancel()
	var region *IDListSet
	if c.share.sharesIDLists() {
		region = c.readRegionIDLists(ctx, hash)
		if region != nil && c.regionFresh(region.Synced) {
			return c.installColdIDLists(key, region, true), nil
		}
	}
	set, err := c.fetchIDLists(ctx, key, nil)
	if refused(err) {
		c.markInvalid(key, err)
		return nil, ErrInvalidKey
	}
	if err != nil && region != nil {
		// An old copy beats none while Statsig cannot be reached; the poll loop refreshes it.
		c.logger.Warn("cannot fetch ID lists from Statsig; serving the region's older copy", "key", hash, "synced", region.Synced, "err", err)
		return c.installColdIDLists(key, region, true), nil
	}
	if err != nil {
		err = fmt.Errorf("%w: ID lists: %v", ErrUnavailable, err)
		c.negatives.Add(failKey, negative{until: time.Now().Add(c.cfg.RuleSets.PollInterval), err: err})
		c.logger.Warn("cannot fetch ID lists for a new key", "key", hash, "err", err)
		return nil, err
	}
	return c.installColdIDLists(key, set, false), nil
}

// readRegionIDLists reads hash's ID lists from the region's store within kvReadTimeout, so that a
// slow store leaves the rest of the request's time to Statsig. It returns nil on a miss.
func (c *Cache) readRegionIDLists(ctx context.Context, hash string) *IDListSet {
	ctx, cancel := context.WithTimeout(ctx, kvReadTimeout)
	defer cancel()
	m, err := c.share.readIDManifest(ctx, hash)
	if err == nil {
		var set *IDListSet
		if set, _, err = c.share.loadLatestIDLists(ctx, hash, m, nil); err == nil {
			return set
		}
	}
	if !errors.Is(err, errNoRegionCopy) && !errors.Is(err, errNATSDown) {
		c.m.idListSyncs.WithLabelValues("region", regionResult(err)).Inc()
		c.logger.Warn("cannot use the region's ID lists; asking Statsig", "key", hash, "err", err)
	}
	return nil
}

// installColdIDLists stores the first set of a key (unless a concurrent path stored one first).
func (c *Cache) installColdIDLists(key string, set *IDListSet, fromRegion bool) *IDListSet {
	ks := c.ensureKey(key)
	ks.ids.mu.Lock()
	defer ks.ids.mu.Unlock()
	if ks.ids.set.Load() == nil {
		ks.ids.set.Store(set)
		ks.ids.last = set.Synced
		src := "Statsig"
		if fromRegion {
			ks.ids.published = set
			src = "the region's store"
			c.m.idListSyncs.WithLabelValues("region", "updated").Inc()
		}
		c.logger.Info("ID lists loaded from "+src, "key", ks.hash, "lists", len(set.Lists), "synced", set.Synced)
	}
	return ks.ids.set.Load()
}

// regionFresh reports whether a region copy synced then is as recent as a poller that keeps its
// lease and interval leaves it: an ID-list interval, plus the lease's slack, plus a slow sync.
func (c *Cache) regionFresh(synced time.Time) bool {
	rs := c.cfg.RuleSets
	return time.Since(synced) < rs.IDListInterval+rs.Share.LeaseTTL+2*c.cfg.Upstream.Timeout
}

func regionResult(err error) string {
	if errors.Is(err, errBadRegionCopy) {
		return "rejected"
	}
	return "failed"
}

// syncIDListsIfDue refreshes ks's ID lists when some SDK uses them and the interval has passed.
// With region sharing only the holder of the key's ID-list lease asks Statsig and publishes what
// it got; the others install the region's copy (the watcher brings it, and they read it when
// due), and ask Statsig themselves only when that copy is unusable or stale. It returns false when
// Statsig refused the key.
func (c *Cache) syncIDListsIfDue(ks *keyState) bool {
	if ks.ids.set.Load() == nil {
		return true
	}
	ks.ids.mu.Lock()
	defer ks.ids.mu.Unlock()
	due := time.Since(ks.ids.last) >= c.cfg.RuleSets.IDListInterval
	shared := c.share.sharesIDLists()
	// The lease is renewed on every poll, not only when due: lease_ttl is shorter than the interval.
	holder := shared && c.share.leadIDLists(ks)
	if shared && !holder {
		if !due {
			return true
		}
		err := c.followIDLists(ks)
		if err == nil {
			ks.ids.fallbacks = 0
			return true
		}
		ks.ids.fallbacks++
		if ks.ids.fallbacks == 1 || ks.ids.fallbacks%30 == 0 {
			c.logger.Warn("the region's ID lists are unusable or stale; asking Statsig from this proxy", "key", ks.hash, "err", err, "times", ks.ids.fallbacks)
		}
	}
	if !due {
		if holder && ks.ids.published != ks.ids.set.Load() {
			c.publishIDLists(ks) // e.g. lists fetched before this proxy took the lease
		}
		return true
	}
	ks.ids.last = time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Upstream.Timeout)
	defer cancel()
	set, err := c.fetchIDLists(ctx, ks.key, ks.ids.set.Load())
	if refused(err) {
		c.markInvalid(ks.key, err)
		return false
	}
	if err != nil {
		c.m.idListSyncs.WithLabelValues("upstream", "failed").Inc()
		c.logger.Warn("cannot refresh ID lists from Statsig; serving the last ones", "key", ks.hash, "err", err)
	} else {
		ks.ids.set.Store(set)
	}
	if holder {
		// Also after a failure: it keeps the region's objects from expiring while Statsig is down.
		c.publishIDLists(ks)
	}
	return true
}

// followIDLists reads the region's manifest of ks's ID lists and installs it when newer than ours.
// It fails when the copy cannot be read or used, or is older than regionFresh allows. Call it with
// ks.ids.mu held.
func (c *Cache) followIDLists(ks *keyState) error {
	ctx, cancel := context.WithTimeout(c.ctx, idShareTimeout)
	defer cancel()
	m, err := c.share.readIDManifest(ctx, ks.hash)
	if err != nil {
		if !errors.Is(err, errNATSDown) {
			c.m.idListSyncs.WithLabelValues("region", regionResult(err)).Inc()
		}
		return err
	}
	installed, err := c.installRegionIDLists(ctx, ks, m)
	if err != nil {
		return err
	}
	if synced := time.UnixMilli(max(m.Synced, installed)); !c.regionFresh(synced) {
		c.m.idListSyncs.WithLabelValues("region", "stale").Inc()
		return fmt.Errorf("the region's poller last synced at %s", synced.Format(time.RFC3339))
	}
	return nil
}

// installRegionIDLists installs the set m describes when it is newer than ks's. It returns the
// sync time (unix ms) of the manifest it installed, 0 when none was newer. Call it with ks.ids.mu
// held.
func (c *Cache) installRegionIDLists(ctx context.Context, ks *keyState, m *idManifest) (int64, error) {
	cur := ks.ids.set.Load()
	if cur != nil && m.Synced <= cur.Synced.UnixMilli() {
		c.m.idListSyncs.WithLabelValues("region", "unchanged").Inc()
		return 0, nil
	}
	set, m, err := c.share.loadLatestIDLists(ctx, ks.hash, m, cur)
	if err != nil {
		c.m.idListSyncs.WithLabelValues("region", regionResult(err)).Inc()
		return 0, err
	}
	ks.ids.set.Store(set)
	ks.ids.last = set.Synced
	ks.ids.published = set
	c.m.idListSyncs.WithLabelValues("region", "updated").Inc()
	c.logger.Debug("ID lists updated from the region's store", "key", ks.hash, "lists", len(set.Lists), "synced", set.Synced)
	return m.Synced, nil
}

// publishIDLists writes ks's current ID lists to the region's store. Call it with ks.ids.mu held.
func (c *Cache) publishIDLists(ks *keyState) {
	set := ks.ids.set.Load()
	ctx, cancel := context.WithTimeout(c.ctx, idShareTimeout)
	defer cancel()
	if err := c.share.publishIDLists(ctx, ks.hash, set); err != nil {
		if !errors.Is(err, errNATSDown) {
			c.logger.Warn("cannot publish ID lists to the region's store; followers fetch them from Statsig if it stays so", "key", ks.hash, "err", err)
		}
		return
	}
	ks.ids.published = set
}

// manifestEntry is one list of Statsig's get_id_lists answer.
type manifestEntry struct {
	Name         string `json:"name"`
	Key          string `json:"key"` // server-core accepts it as an alias of name
	Size         int64  `json:"size"`
	URL          string `json:"url"`
	CreationTime int64  `json:"creationTime"`
	FileID       string `json:"fileID"`
}

// fetchIDLists asks Statsig for key's manifest and downloads what is new in each file, the way
// the SDKs do: a new fileID (with a creation time not older) starts the list over; otherwise only
// the bytes past those held are requested, with Range.
func (c *Cache) fetchIDLists(ctx context.Context, key string, prev *IDListSet) (*IDListSet, error) {
	body, err := c.up.fetchIDListManifest(ctx, key)
	if err != nil {
		return nil, err
	}
	var man map[string]manifestEntry
	if err := json.Unmarshal(body, &man); err != nil {
		return nil, fmt.Errorf("get_id_lists: answer is not a JSON object of lists: %w", err)
	}
	if prev == nil {
		prev = emptyIDLists
	}
	log := c.logger.With("key", wire.KeyHash(key))
	next := &IDListSet{Lists: make(map[string]*IDList, len(man)), Synced: time.Now()}
	for name, m := range man {
		if m.Name == "" {
			m.Name = m.Key
		}
		if m.Name == "" {
			m.Name = name
		}
		old := prev.Lists[name]
		if m.URL == "" || m.FileID == "" || (old != nil && m.CreationTime < old.CreationTime) {
			if old != nil { // incomplete or older entry: keep what we have, as SDKs do
				next.Lists[name] = old
			}
			continue
		}
		cur := old
		if cur == nil || cur.FileID != m.FileID {
			cur = &IDList{Name: m.Name, FileID: m.FileID, CreationTime: m.CreationTime, ids: map[string]struct{}{}}
		}
		if m.Size > int64(len(cur.Data)) {
			chunk, partial, err := c.up.fetchIDListFile(ctx, m.URL, int64(len(cur.Data)))
			if err != nil {
				log.Warn("cannot download ID list; keeping the bytes already held", "list", name, "err", err)
				if old != nil && old.FileID == cur.FileID {
					next.Lists[name] = old
				}
				continue
			}
			if len(chunk) > 0 {
				if chunk[0] != '+' && chunk[0] != '-' {
					// SDKs drop such a list too; serving it would make them drop theirs.
					log.Warn("ID list file does not start with + or -; list dropped", "list", name)
					continue
				}
				cur = cur.extend(chunk, !partial && len(cur.Data) > 0)
			}
		}
		next.Lists[name] = cur
	}
	c.m.idListSyncs.WithLabelValues("upstream", "ok").Inc()
	return next, nil
}

// extend returns a new list with chunk appended (or, when whole, replacing the data: the server
// ignored Range and sent the whole file).
func (l *IDList) extend(chunk []byte, whole bool) *IDList {
	n := &IDList{Name: l.Name, FileID: l.FileID, CreationTime: l.CreationTime}
	if whole {
		n.Data = append([]byte(nil), chunk...)
		n.ids = map[string]struct{}{}
	} else {
		n.Data = make([]byte, 0, len(l.Data)+len(chunk))
		n.Data = append(append(n.Data, l.Data...), chunk...)
		n.ids = cloneIDs(l.ids)
	}
	applyIDLines(n.ids, chunk)
	return n
}

func cloneIDs(ids map[string]struct{}) map[string]struct{} {
	if ids == nil {
		return map[string]struct{}{}
	}
	return maps.Clone(ids)
}

// applyIDLines applies the "+id" and "-id" lines of chunk to ids.
func applyIDLines(ids map[string]struct{}, chunk []byte) {
	for _, line := range bytes.Split(chunk, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) < 2 {
			continue
		}
		switch line[0] {
		case '+':
			ids[string(line[1:])] = struct{}{}
		case '-':
			delete(ids, string(line[1:]))
		}
	}
}
