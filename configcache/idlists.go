package configcache

import (
	"bytes"
	"context"
	"encoding/json"
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
	// Synced is when Statsig was last asked.
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
	set  atomic.Pointer[IDListSet]
	mu   sync.Mutex // serialises syncs
	last time.Time  // guarded by mu
}

// IDLists returns key's ID lists, asking Statsig on first use; from then on they are refreshed
// every rulesets.id_list_interval while the key is held. Offline keys have none.
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
	ch := c.sf.DoChan("ids|"+key, func() (any, error) { return c.coldIDLists(key) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*IDListSet), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Upstream.Timeout)
	defer cancel()
	set, err := c.fetchIDLists(ctx, key, nil)
	if refused(err) {
		c.markInvalid(key, err)
		return nil, ErrInvalidKey
	}
	if err != nil {
		err = fmt.Errorf("%w: ID lists: %v", ErrUnavailable, err)
		c.negatives.Add(failKey, negative{until: time.Now().Add(c.cfg.RuleSets.PollInterval), err: err})
		c.logger.Warn("cannot fetch ID lists for a new key", "key", wire.KeyHash(key), "err", err)
		return nil, err
	}
	ks := c.ensureKey(key)
	ks.ids.mu.Lock()
	ks.ids.last = time.Now()
	if ks.ids.set.Load() == nil {
		ks.ids.set.Store(set)
	}
	ks.ids.mu.Unlock()
	c.logger.Info("ID lists fetched from Statsig", "key", ks.hash, "lists", len(set.Lists))
	return ks.ids.set.Load(), nil
}

// syncIDListsIfDue refreshes ks's ID lists when some SDK uses them and the interval has passed.
// It returns false when Statsig refused the key.
func (c *Cache) syncIDListsIfDue(ks *keyState) bool {
	prev := ks.ids.set.Load()
	if prev == nil {
		return true
	}
	ks.ids.mu.Lock()
	defer ks.ids.mu.Unlock()
	if time.Since(ks.ids.last) < c.cfg.RuleSets.IDListInterval {
		return true
	}
	ks.ids.last = time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Upstream.Timeout)
	defer cancel()
	set, err := c.fetchIDLists(ctx, ks.key, prev)
	if refused(err) {
		c.markInvalid(ks.key, err)
		return false
	}
	if err != nil {
		c.m.idListSyncs.WithLabelValues("failed").Inc()
		c.logger.Warn("cannot refresh ID lists from Statsig; serving the last ones", "key", ks.hash, "err", err)
		return true
	}
	ks.ids.set.Store(set)
	return true
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
	c.m.idListSyncs.WithLabelValues("ok").Inc()
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
		n.ids = maps.Clone(l.ids)
	}
	for _, line := range bytes.Split(chunk, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) < 2 {
			continue
		}
		switch line[0] {
		case '+':
			n.ids[string(line[1:])] = struct{}{}
		case '-':
			delete(n.ids, string(line[1:]))
		}
	}
	return n
}
