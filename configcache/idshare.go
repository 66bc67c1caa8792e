package configcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
)

// Region sharing of ID lists.
//
// ID lists are split between the rule-set KV bucket and a JetStream object store named
// <bucket>_idlists:
//
//	KV     lease.<h>.ids   the ID-list poll lease of key h (same format and rules as the rule-set leases)
//	KV     ids.<h>         the region's manifest of h's ID lists (JSON idManifest): per list its name,
//	                       fileID, creationTime, size and SHA-256 digest, and when Statsig was asked
//	object <h>/<list>      the bytes of one list, exactly as served to SDKs
//
// Why an object store for the bytes: a list can be many MB, more than a KV value or a NATS message
// may hold. The object store already chunks (128 KiB), checks a SHA-256 digest on every read, and
// replaces an object by writing new chunks first and purging the old ones after, so a reader sees
// either the old or the new bytes, never a mix; chunked KV values would need all of that written
// again. The manifest stays in the KV: it is small, updates of it can be compare-and-set with the
// revision read, like the leases, and followers watch it the way they watch rule sets.
//
// The holder of lease.<h>.ids fetches h's ID lists from Statsig every rulesets.id_list_interval,
// writes the objects whose digest the store does not have yet, then the manifest. Followers install
// a manifest newer than their lists, downloading only the lists whose digest changed, and check
// every byte against the manifest: a missing, partial or wrong object leaves the lists they serve
// as they were. A follower asks Statsig itself only when the region's copy is unusable or older
// than a holder that polls on time would leave it. Objects expire after nats.stream.max_age (the
// Statsig outage a region is built to bridge) unless rewritten: the holder rewrites those past half
// that age, so only lists no proxy serves any more go away.

// idListLease is the lease name of a key's ID-list poller (lease.<h>.ids).
const idListLease = "ids"

// idManifestVersion is the format of ids.<h> values this code writes and accepts.
const idManifestVersion = 1

// idShareTimeout bounds the background reads and writes of one key's ID lists in the region's
// store (several MB over the region's network).
const idShareTimeout = 30 * time.Second

// errBadRegionCopy marks a region copy that was read but is unusable (as opposed to unreachable).
var errBadRegionCopy = errors.New("unusable region copy")

// errNoRegionCopy: the region's store holds no manifest for the key.
var errNoRegionCopy = errors.New("no region copy")

// idManifest is the value of ids.<h>.
type idManifest struct {
	V      int                       `json:"v"`
	Holder string                    `json:"holder"` // instance that published it
	Synced int64                     `json:"synced"` // when the holder last asked Statsig (unix ms)
	Lists  map[string]idManifestList `json:"lists"`  // by the key of Statsig's manifest
}

// idManifestList describes one list of an idManifest.
type idManifestList struct {
	Name         string `json:"name"`
	FileID       string `json:"fileID"`
	CreationTime int64  `json:"creationTime"`
	Size         int64  `json:"size"`
	Digest       string `json:"digest"` // "SHA-256=<base64url>", as the object store writes it
}

func idsKey(hash string) string             { return "ids." + hash }
func idObjectName(hash, list string) string { return hash + "/" + list }
func parseIDsKey(k string) (hash string, ok bool) {
	hash, ok = strings.CutPrefix(k, "ids.")
	return hash, ok && hash != "" && !strings.Contains(hash, ".")
}

// digestOf is data's digest in the object store's notation.
func digestOf(data []byte) string {
	h := sha256.New()
	h.Write(data)
	return jetstream.GetObjectDigestValue(h)
}

func decodeIDManifest(v []byte) (*idManifest, error) {
	var m idManifest
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest is not JSON: %v", errBadRegionCopy, err)
	}
	if m.V != idManifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d, want %d", errBadRegionCopy, m.V, idManifestVersion)
	}
	if m.Synced <= 0 {
		return nil, fmt.Errorf("%w: manifest without a sync time", errBadRegionCopy)
	}
	for k, l := range m.Lists {
		if k == "" || l.FileID == "" || l.Size < 0 || l.Size > maxUpstreamBody || !strings.HasPrefix(l.Digest, "SHA-256=") {
			return nil, fmt.Errorf("%w: manifest entry %q is incomplete or too large", errBadRegionCopy, k)
		}
	}
	return &m, nil
}

func manifestOf(set *IDListSet, holder string) *idManifest {
	m := &idManifest{V: idManifestVersion, Holder: holder, Synced: set.Synced.UnixMilli(), Lists: make(map[string]idManifestList, len(set.Lists))}
	for k, l := range set.Lists {
		m.Lists[k] = idManifestList{Name: l.Name, FileID: l.FileID, CreationTime: l.CreationTime, Size: int64(len(l.Data)), Digest: l.sha()}
	}
	return m
}

// openIDLists opens the object store and watches the manifests. On error ID lists are not shared.
func (s *share) openIDLists(ctx context.Context, js jetstream.JetStream, cfg config.Share, stream config.Stream, placement *jetstream.Placement) error {
	name := cfg.Bucket + "_idlists"
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      name,
		Description: "sigedge: ID lists shared by the proxies of a region (manifests and leases in KV " + cfg.Bucket + ")",
		TTL:         stream.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, stream.Replicas),
		Placement:   placement,
	})
	if err != nil {
		return fmt.Errorf("configcache: object store %s: %w", name, err)
	}
	w, err := s.kv.Watch(s.c.ctx, "ids.>", jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("configcache: watch ID-list manifests in KV bucket %s: %w", cfg.Bucket, err)
	}
	s.obs, s.objTTL, s.idWatcher = obs, stream.MaxAge, w
	s.c.wg.Add(1)
	go s.followPuts(s.idWatcher, s.installSharedIDLists)
	s.c.logger.Info("sharing ID lists through a JetStream object store", "object_store", name, "object_ttl", s.objTTL)
	return nil
}

// sharesIDLists reports whether ID lists go through the region's store (nil-safe).
func (s *share) sharesIDLists() bool { return s != nil && s.obs != nil }

// leadIDLists acquires or renews ks's ID-list poll lease. Call it with ks.ids.mu held.
func (s *share) leadIDLists(ks *keyState) bool {
	var synced int64
	if !ks.ids.last.IsZero() {
		synced = ks.ids.last.UnixMilli()
	}
	return s.hold(leaseKey(ks.hash, idListLease), &ks.ids.lease, synced, nil, s.c.logger.With("key", ks.hash, "lease", idListLease))
}

// installSharedIDLists installs a manifest another proxy published, if this proxy serves that
// key's ID lists.
func (s *share) installSharedIDLists(e jetstream.KeyValueEntry) {
	hash, ok := parseIDsKey(e.Key())
	if !ok {
		return
	}
	v, ok := s.c.byHash.Load(hash)
	if !ok {
		return
	}
	ks := v.(*keyState)
	if ks.ids.set.Load() == nil {
		return // no SDK asked this proxy for them
	}
	m, err := decodeIDManifest(e.Value())
	if err != nil {
		s.c.m.idListSyncs.WithLabelValues("region", "rejected").Inc()
		s.c.logger.Warn("ignoring an unusable ID-list manifest in the KV bucket", "key", hash, "err", err)
		return
	}
	if m.Holder == s.id {
		return // our own publication
	}
	// The poll goroutine may hold the lock for a sync; this watcher then waits, which is fine:
	// the manifests of other keys are small and nothing is lost, only delayed.
	ks.ids.mu.Lock()
	ctx, cancel := context.WithTimeout(s.c.ctx, idShareTimeout)
	_, err = s.c.installRegionIDLists(ctx, ks, m)
	cancel()
	ks.ids.mu.Unlock()
	if err != nil {
		s.c.logger.Warn("the region's ID lists cannot be used; keeping the lists held", "key", hash, "err", err)
	}
}

// readIDManifest returns the region's manifest of hash's ID lists (errNoRegionCopy when none).
func (s *share) readIDManifest(ctx context.Context, hash string) (*idManifest, error) {
	if s.down() {
		return nil, errNATSDown
	}
	e, err := s.kv.Get(ctx, idsKey(hash))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errNoRegionCopy
	}
	if err != nil {
		return nil, fmt.Errorf("read ID-list manifest: %w", err)
	}
	return decodeIDManifest(e.Value())
}

// loadIDLists builds the set m describes, taking the lists of cur whose bytes m's digests match and
// reading the others from the object store. Any list that cannot be read or checked fails the
// whole set: a set is installed complete or not at all.
func (s *share) loadIDLists(ctx context.Context, hash string, m *idManifest, cur *IDListSet) (*IDListSet, error) {
	if cur == nil {
		cur = emptyIDLists
	}
	next := &IDListSet{Lists: make(map[string]*IDList, len(m.Lists)), Synced: time.UnixMilli(m.Synced)}
	for k, want := range m.Lists {
		old := cur.Lists[k]
		if old != nil && old.Name == want.Name && old.FileID == want.FileID && old.CreationTime == want.CreationTime &&
			int64(len(old.Data)) == want.Size && old.sha() == want.Digest {
			next.Lists[k] = old
			continue
		}
		data, err := s.readIDListObject(ctx, hash, k, want)
		if err != nil {
			return nil, fmt.Errorf("ID list %q: %w", k, err)
		}
		next.Lists[k] = listFromRegion(want, data, old)
	}
	return next, nil
}

// loadLatestIDLists is loadIDLists, tried once more with the newest manifest when m's copy is
// unusable: the poller writes the objects before the manifest that describes them, so an object
// that no longer matches m may belong to a newer manifest. It returns the manifest it loaded.
func (s *share) loadLatestIDLists(ctx context.Context, hash string, m *idManifest, cur *IDListSet) (*IDListSet, *idManifest, error) {
	set, err := s.loadIDLists(ctx, hash, m, cur)
	if errors.Is(err, errBadRegionCopy) {
		if m2, err2 := s.readIDManifest(ctx, hash); err2 == nil && m2.Synced > m.Synced {
			m = m2
			set, err = s.loadIDLists(ctx, hash, m, cur)
		}
	}
	return set, m, err
}

// readIDListObject reads one list's bytes and checks them against the manifest.
func (s *share) readIDListObject(ctx context.Context, hash, list string, want idManifestList) ([]byte, error) {
	r, err := s.obs.Get(ctx, idObjectName(hash, list))
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("%w: object missing", errBadRegionCopy)
		}
		return nil, fmt.Errorf("get object: %w", err)
	}
	defer r.Close()
	// One byte past the announced size tells a longer object apart without reading all of it.
	data, err := io.ReadAll(io.LimitReader(r, want.Size+1))
	if err != nil {
		if errors.Is(err, jetstream.ErrDigestMismatch) {
			return nil, fmt.Errorf("%w: object damaged: %v", errBadRegionCopy, err)
		}
		return nil, fmt.Errorf("read object: %w", err)
	}
	if int64(len(data)) != want.Size {
		return nil, fmt.Errorf("%w: object holds %d bytes or more, the manifest %d", errBadRegionCopy, len(data), want.Size)
	}
	if d := digestOf(data); d != want.Digest {
		return nil, fmt.Errorf("%w: object digest %s, the manifest %s", errBadRegionCopy, d, want.Digest)
	}
	if len(data) > 0 && data[0] != '+' && data[0] != '-' {
		return nil, fmt.Errorf("%w: object is not an ID list (no leading + or -)", errBadRegionCopy)
	}
	return data, nil
}

// listFromRegion builds a list from checked bytes. When they extend old's bytes at a line boundary
// (the usual append), only the new lines are parsed, as after a Range download.
func listFromRegion(want idManifestList, data []byte, old *IDList) *IDList {
	l := &IDList{Name: want.Name, FileID: want.FileID, CreationTime: want.CreationTime, Data: data}
	if old != nil && old.FileID == want.FileID && bytes.HasPrefix(data, old.Data) &&
		(len(old.Data) == 0 || old.Data[len(old.Data)-1] == '\n') {
		l.ids = cloneIDs(old.ids)
		applyIDLines(l.ids, data[len(old.Data):])
	} else {
		l.ids = map[string]struct{}{}
		applyIDLines(l.ids, data)
	}
	l.digestOnce.Do(func() { l.digest = want.Digest })
	return l
}

// publishIDLists makes the region's copy of hash's ID lists equal to set: objects first, whose
// digest the store lacks (or that are past half their max age), then the manifest, compare-and-set
// on the revision read. A manifest already equal is not rewritten, nor one another proxy wrote
// from a newer sync.
func (s *share) publishIDLists(ctx context.Context, hash string, set *IDListSet) error {
	if s.down() {
		s.c.m.share.WithLabelValues("idlists_publish_failed").Inc()
		return errNATSDown
	}
	k := idsKey(hash)
	var rev uint64
	var prev *idManifest
	var prevRaw []byte
	e, err := s.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		s.c.m.share.WithLabelValues("idlists_publish_failed").Inc()
		return fmt.Errorf("read ID-list manifest: %w", err)
	default:
		rev, prevRaw = e.Revision(), e.Value()
		prev, _ = decodeIDManifest(prevRaw) // an unusable manifest is simply replaced
	}
	m := manifestOf(set, s.id)
	if prev != nil && prev.Holder != s.id && prev.Synced > m.Synced {
		s.c.m.share.WithLabelValues("publish_skipped").Inc()
		return nil // another poller's newer sync; the watcher installs it here
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode ID-list manifest: %w", err)
	}
	if len(v) > s.maxValue {
		s.c.m.share.WithLabelValues("idlists_too_large").Inc()
		return fmt.Errorf("ID-list manifest of %d bytes exceeds the KV bucket's %d", len(v), s.maxValue)
	}
	for list, l := range set.Lists {
		if err := s.ensureIDListObject(ctx, hash, list, l); err != nil {
			s.c.m.share.WithLabelValues("idlists_publish_failed").Inc()
			return err
		}
	}
	if bytes.Equal(v, prevRaw) {
		return nil
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, k, v)
	} else {
		_, err = s.kv.Update(ctx, k, v, rev)
	}
	if err != nil {
		// A lost race means another poller published at the same moment: its sync is as good.
		s.c.m.share.WithLabelValues("idlists_publish_failed").Inc()
		return fmt.Errorf("write ID-list manifest: %w", err)
	}
	s.c.m.share.WithLabelValues("idlists_published").Inc()
	if prev != nil {
		for list := range prev.Lists {
			if _, ok := m.Lists[list]; !ok {
				// Gone from Statsig's manifest; a follower still reading it keeps its lists.
				if err := s.obs.Delete(ctx, idObjectName(hash, list)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
					s.c.logger.Debug("cannot delete a dropped ID list from the object store", "key", hash, "list", list, "err", err)
				}
			}
		}
	}
	return nil
}

// ensureIDListObject writes l's bytes to the store unless it holds them already.
func (s *share) ensureIDListObject(ctx context.Context, hash, list string, l *IDList) error {
	name := idObjectName(hash, list)
	info, err := s.obs.GetInfo(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("object info of ID list %q: %w", list, err)
	}
	if err == nil && info.Digest == l.sha() && int64(info.Size) == int64(len(l.Data)) &&
		(s.objTTL <= 0 || time.Since(info.ModTime) < s.objTTL/2) {
		return nil
	}
	info, err = s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(l.Data))
	if err != nil {
		return fmt.Errorf("write ID list %q to the object store: %w", list, err)
	}
	if info.Digest != l.sha() {
		return fmt.Errorf("object store digest %s of ID list %q differs from ours", info.Digest, list)
	}
	return nil
}
