package configcache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/wire"
)

func TestIDListsAreSyncedIncrementally(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-ids"
	up.SetSpec(key, spec(1000, true))
	a, b, cc := configcachetest.HashedID("a"), configcachetest.HashedID("b"), configcachetest.HashedID("c")
	v1 := "+" + a + "\n+" + b + "\n"
	up.SetIDList(key, "list", []byte(v1), "file1", 1000)
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})

	set, err := c.IDLists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	l := set.Lists["list"]
	if l == nil || string(l.Data) != v1 || l.FileID != "file1" || !l.Contains(a) || !l.Contains(b) || l.Contains(cc) {
		t.Fatalf("first sync: %+v", l)
	}
	if byHash, ok := c.IDListsByHash(wire.KeyHash(key)); !ok || byHash != set {
		t.Fatal("IDListsByHash does not find the key's lists")
	}
	files := func() []Request {
		return up.Requests(func(r Request) bool { return r.Endpoint == "id_list_file" })
	}
	if f := files(); len(f) != 1 || f[0].Range != "bytes=0-" {
		t.Fatalf("file requests: %+v", f)
	}

	// Appended lines: only the new bytes are downloaded, with Range.
	v2 := v1 + "-" + a + "\n+" + cc + "\n"
	up.SetIDList(key, "list", []byte(v2), "file1", 1000)
	up.WaitFor(t, 5*time.Second, "the appended lines", func() bool {
		s, _ := c.IDLists(context.Background(), key)
		return s.Lists["list"] != nil && s.Lists["list"].Size() == len(v2)
	})
	set, _ = c.IDLists(context.Background(), key)
	if l := set.Lists["list"]; string(l.Data) != v2 || l.Contains(a) || !l.Contains(b) || !l.Contains(cc) || l.Len() != 2 {
		t.Fatalf("after append: data %q, ids %d", l.Data, l.Len())
	}
	if f, want := files(), fmt.Sprintf("bytes=%d-", len(v1)); f[len(f)-1].Range != want {
		t.Fatalf("incremental download range: %q, want %s", f[len(f)-1].Range, want)
	}

	// A new file (compaction) starts over from byte 0.
	v3 := "+" + cc + "\n"
	up.SetIDList(key, "list", []byte(v3), "file2", 2000)
	up.WaitFor(t, 5*time.Second, "the new file", func() bool {
		s, _ := c.IDLists(context.Background(), key)
		return s.Lists["list"] != nil && s.Lists["list"].FileID == "file2"
	})
	set, _ = c.IDLists(context.Background(), key)
	if l := set.Lists["list"]; string(l.Data) != v3 || l.Contains(b) || !l.Contains(cc) {
		t.Fatalf("after reset: %q", l.Data)
	}
	if f := files(); f[len(f)-1].Range != "bytes=0-" {
		t.Fatalf("reset download range: %q", f[len(f)-1].Range)
	}

	// Evaluations see the lists through the cache's evaluator.
	up.SetSpec(key, configcachetest.Spec{Time: 3000, Gates: []configcachetest.Gate{{Name: "listed", Pass: true, IDList: "list"}}})
	up.WaitFor(t, 5*time.Second, "the rule set with the list gate", func() bool {
		e, err := c.Get(context.Background(), key, FormatV2)
		return err == nil && e.Time == 3000
	})
	ev, err := c.Evaluator(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]bool{"c": true, "b": false} {
		u, _ := evalcore.ParseUser([]byte(`{"userID":"` + user + `"}`))
		if got := ev.GateValue(u, "listed"); got != want {
			t.Errorf("user %s in list gate: got %v, want %v", user, got, want)
		}
	}

	// A list gone from the manifest is dropped.
	up.RemoveIDList(key, "list")
	up.WaitFor(t, 5*time.Second, "the list to be dropped", func() bool {
		s, _ := c.IDLists(context.Background(), key)
		return s != nil && len(s.Lists) == 0
	})
}

func TestIDListFileNotStartingWithPlusOrMinusIsDropped(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-badlist"
	up.SetSpec(key, spec(1000, true))
	up.SetIDList(key, "bad", []byte("<html>not a list</html>"), "f", 1)
	up.SetIDList(key, "good", []byte("+abc\n"), "f", 1)
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})
	set, err := c.IDLists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if set.Lists["bad"] != nil || set.Lists["good"] == nil {
		t.Fatalf("lists: %v", set.Names())
	}
}

func TestIDListsOfRefusedAndOfflineKeys(t *testing.T) {
	up := configcachetest.New(t)
	c := newTestCache(t, Options{Config: testConfig(t, up, nil)})
	if _, err := c.IDLists(context.Background(), "secret-nobody"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("refused key: %v", err)
	}
	if _, err := c.Get(context.Background(), "secret-nobody", FormatV1); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("refused key is not remembered: %v", err)
	}
	if n := len(up.Requests(nil)); n != 1 {
		t.Fatalf("upstream requests: %d, want 1", n)
	}
}
