package evalcore

import (
	"strings"
	"sync"
	"sync/atomic"
)

// IDListStore holds ID lists for evaluation. Reads are lock-free: each list is
// an immutable snapshot swapped atomically on update (copy-on-write), so an
// evaluation never waits for an update. Updates are serialised by a mutex.
// It implements IDLists.
type IDListStore struct {
	mu    sync.Mutex // serialises writers
	lists atomic.Pointer[map[string]*idList]
}

type idList struct {
	ids map[string]struct{}
}

// NewIDListStore returns an empty store.
func NewIDListStore() *IDListStore {
	s := &IDListStore{}
	m := map[string]*idList{}
	s.lists.Store(&m)
	return s
}

// Contains reports whether list holds key (an IDListKey). Unknown lists hold nothing.
func (s *IDListStore) Contains(list, key string) bool {
	m := s.lists.Load()
	if m == nil {
		return false
	}
	l := (*m)[list]
	if l == nil {
		return false
	}
	_, ok := l.ids[key]
	return ok
}

// Names returns the names of the loaded lists.
func (s *IDListStore) Names() []string {
	m := s.lists.Load()
	if m == nil {
		return nil
	}
	return sortedKeys(*m)
}

// Size returns the number of ids in a list and whether it exists.
func (s *IDListStore) Size(list string) (int, bool) {
	m := s.lists.Load()
	if m == nil {
		return 0, false
	}
	l := (*m)[list]
	if l == nil {
		return 0, false
	}
	return len(l.ids), true
}

// SetList replaces a list's whole contents with the lines of an ID-list file
// (same line rules as ApplyChanges, starting from an empty list).
func (s *IDListStore) SetList(list string, content []byte) {
	s.update(list, content, true)
}

// ApplyChanges applies incremental "+id" / "-id" lines to a list, creating it
// when missing. Line rules follow SC: CRLF allowed; lines whose trimmed length
// is ≤ 1 are skipped; the id is the untrimmed line after its first character,
// so trailing spaces stay part of the id (an SC quirk).
func (s *IDListStore) ApplyChanges(list string, changes []byte) {
	s.update(list, changes, false)
}

// DeleteList removes a list (e.g. one missing from the manifest).
func (s *IDListStore) DeleteList(list string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.lists.Load()
	if _, ok := old[list]; !ok {
		return
	}
	next := make(map[string]*idList, len(old))
	for k, v := range old {
		if k != list {
			next[k] = v
		}
	}
	s.lists.Store(&next)
}

func (s *IDListStore) update(list string, content []byte, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.lists.Load()
	ids := map[string]struct{}{}
	if prev := old[list]; prev != nil && !reset {
		ids = make(map[string]struct{}, len(prev.ids))
		for k := range prev.ids {
			ids[k] = struct{}{}
		}
	}
	for _, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if len(strings.TrimSpace(line)) <= 1 {
			continue
		}
		op, id := line[0], line[1:]
		switch op {
		case '+':
			ids[id] = struct{}{}
		case '-':
			delete(ids, id)
		}
	}
	next := make(map[string]*idList, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[list] = &idList{ids: ids}
	s.lists.Store(&next)
}
