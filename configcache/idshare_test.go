package configcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/internal/wire"
)

// idLine is the list line that adds user.
func idLine(user string) string { return configcachetest.IDListLine(user) }

// regionManifest is the manifest the region's KV holds for key (nil when none or unusable).
func regionManifest(t *testing.T, c *testCache, key string) *idManifest {
	t.Helper()
	e, err := c.share.kv.Get(context.Background(), idsKey(wire.KeyHash(key)))
	if err != nil {
		return nil
	}
	m, err := decodeIDManifest(e.Value())
	if err != nil {
		return nil
	}
	return m
}

// putManifest writes m as the region's manifest of key, as a proxy other than the test's would.
func putManifest(t *testing.T, c *testCache, key string, m *idManifest) {
	t.Helper()
	v, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.share.kv.Put(context.Background(), idsKey(wire.KeyHash(key)), v); err != nil {
		t.Fatal(err)
	}
}

func heldIDLists(c *testCache, key string) *IDListSet {
	s, _ := c.IDListsByHash(wire.KeyHash(key))
	return s
}

// sameIDLists fails unless both sets hold the same lists, bytes and memberships of users.
func sameIDLists(t *testing.T, a, b *IDListSet, users []string) {
	t.Helper()
	if an, bn := strings.Join(a.Names(), ","), strings.Join(b.Names(), ","); an != bn {
		t.Fatalf("lists differ: %s vs %s", an, bn)
	}
	for name, la := range a.Lists {
		lb := b.Lists[name]
		if la.FileID != lb.FileID || la.CreationTime != lb.CreationTime || !bytes.Equal(la.Data, lb.Data) || la.Len() != lb.Len() {
			t.Fatalf("list %s differs: file %s/%s, %d/%d bytes, %d/%d ids", name, la.FileID, lb.FileID, la.Size(), lb.Size(), la.Len(), lb.Len())
		}
		for _, u := range users {
			id := configcachetest.HashedID(u)
			if la.Contains(id) != lb.Contains(id) {
				t.Fatalf("list %s: Contains(%s) is %v on one proxy, %v on the other", name, u, la.Contains(id), lb.Contains(id))
			}
		}
	}
}

func TestSharedIDListsOnePollerPerRegion(t *testing.T) {
	const interval = 300 * time.Millisecond
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-idshare"
	users := []string{"u1", "u2", "u3", "u4"}
	up.SetSpec(key, spec(1000, true))
	v1 := idLine("u1") + idLine("u2")
	up.SetIDList(key, "vips", []byte(v1), "vips-1", 1000)
	up.SetIDList(key, "staff", []byte(idLine("u3")), "staff-1", 1000)
	withInterval := func(c *config.Config) {
		c.RuleSets.IDListInterval = interval
		c.RuleSets.Share.LeaseTTL = 3 * time.Second // a holder stalled by a loaded machine keeps its lease
	}
	a := sharedCacheWith(t, up, connect, "/a", withInterval)
	b := sharedCacheWith(t, up, connect, "/b", withInterval)
	ctx := context.Background()

	if _, err := a.IDLists(ctx, key); err != nil {
		t.Fatal(err)
	}
	// a is the only proxy using the lists: it takes their lease and publishes them.
	up.WaitFor(t, 5*time.Second, "the region's copy", func() bool { return regionManifest(t, a, key) != nil })
	sb, err := b.IDLists(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	upstreamIDRequests := func(prefix string) int {
		return up.Count(prefix, "get_id_lists") + up.Count(prefix, "id_list_file")
	}
	if n := upstreamIDRequests("/b"); n != 0 {
		t.Fatalf("the second proxy asked Statsig %d times for ID lists the region holds", n)
	}
	sameIDLists(t, heldIDLists(a, key), sb, users)

	// One manifest request per interval for the region, by the holder.
	manifests := func(prefix string) []Request {
		return up.Requests(func(r Request) bool { return r.Prefix == prefix && r.Endpoint == "get_id_lists" })
	}
	up.WaitFor(t, 20*interval, "4 region syncs after the first fetch", func() bool { return len(manifests("/a")) >= 5 })
	if n := len(manifests("/b")); n != 0 {
		t.Fatalf("the follower asked Statsig for the manifest %d times while the holder polled", n)
	}
	reqs := manifests("/a")
	for i := 1; i < len(reqs); i++ {
		// The holder asks when its lists are an interval old; only request latency (up to 100 ms
		// tolerated) shortens a gap. Asking on every 100 ms poll would not pass.
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < interval-100*time.Millisecond {
			t.Fatalf("manifest requests %d and %d are %s apart: more than one per interval of %s", i-1, i, gap, interval)
		}
	}

	// Appended lines reach the follower; the holder downloaded only them.
	v2 := v1 + "-" + configcachetest.HashedID("u1") + "\n" + idLine("u4")
	up.SetIDList(key, "vips", []byte(v2), "vips-1", 1000)
	up.WaitFor(t, 10*interval, "the appended lines at the follower", func() bool {
		l := heldIDLists(b, key).Lists["vips"]
		return l != nil && l.Size() == len(v2)
	})
	files := up.Requests(func(r Request) bool { return r.Prefix == "/a" && r.Endpoint == "id_list_file" })
	if last := files[len(files)-1]; last.Range != fmt.Sprintf("bytes=%d-", len(v1)) {
		t.Errorf("the holder's download of the appended lines asked for %q", last.Range)
	}
	sb = heldIDLists(b, key)
	sameIDLists(t, heldIDLists(a, key), sb, users)
	if l := sb.Lists["vips"]; l.Contains(configcachetest.HashedID("u1")) || !l.Contains(configcachetest.HashedID("u4")) {
		t.Fatalf("follower after the append: u1 %v (want false), u4 %v (want true)", l.Contains(configcachetest.HashedID("u1")), l.Contains(configcachetest.HashedID("u4")))
	}

	// A new file restarts the list.
	v3 := idLine("u3")
	up.SetIDList(key, "vips", []byte(v3), "vips-2", 2000)
	up.WaitFor(t, 10*interval, "the new file at the follower", func() bool {
		l := heldIDLists(b, key).Lists["vips"]
		return l != nil && l.FileID == "vips-2"
	})
	sb = heldIDLists(b, key)
	sameIDLists(t, heldIDLists(a, key), sb, users)
	if l := sb.Lists["vips"]; string(l.Data) != v3 || l.Len() != 1 || !l.Contains(configcachetest.HashedID("u3")) {
		t.Fatalf("follower after the new file: %q", l.Data)
	}
	if n := upstreamIDRequests("/b"); n != 0 {
		t.Fatalf("the follower asked Statsig %d times", n)
	}
	if n := counterValue(b.m.idListSyncs.WithLabelValues("region", "updated")); n < 3 {
		t.Errorf("follower's region updates: %v, want at least 3 (first load, append, new file)", n)
	}

	// The holder stops: the follower takes over polling.
	a.Close()
	up.WaitFor(t, 5*time.Second, "the follower to poll the ID lists", func() bool { return len(manifests("/b")) > 0 })
	v4 := idLine("u3") + idLine("u1")
	up.SetIDList(key, "staff", []byte(v4), "staff-1", 1000)
	up.WaitFor(t, 10*interval, "the change at the new holder", func() bool {
		l := heldIDLists(b, key).Lists["staff"]
		return l != nil && string(l.Data) == v4
	})
	t.Logf("%d manifest requests by the holder, 0 by the follower before the take-over", len(reqs))
}

func TestColdProxyReadsTheRegionsIDListsFirst(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-idcold"
	up.SetSpec(key, configcachetest.Spec{Time: 1000, Gates: []configcachetest.Gate{{Name: "vip", Pass: true, IDList: "vips"}}})
	regionData, statsigData := idLine("u1"), idLine("u1")+idLine("u2")
	up.SetIDList(key, "vips", []byte(regionData), "vips-1", 1000)
	// A long interval: the first proxy publishes once and never polls again.
	slow := func(c *config.Config) { c.RuleSets.IDListInterval = time.Hour }
	first := sharedCacheWith(t, up, connect, "/first", slow)
	if _, err := first.Get(context.Background(), key, FormatV2); err != nil {
		t.Fatal(err)
	}
	if _, err := first.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	up.WaitFor(t, 5*time.Second, "the region's copy", func() bool { return regionManifest(t, first, key) != nil })
	published := regionManifest(t, first, key)
	first.Close()
	up.SetIDList(key, "vips", []byte(statsigData), "vips-1", 1000) // Statsig moves on

	for i, tc := range []struct {
		name     string
		age      time.Duration // of the region's copy
		statsig  configcachetest.Mode
		wantData string
		wantAsks int // manifest requests of the new proxy
	}{
		{"fresh copy, Statsig down", 0, configcachetest.Fail, regionData, 0},
		{"fresh copy, Statsig up", 0, configcachetest.OK, regionData, 0},
		{"stale copy, Statsig up", 24 * time.Hour, configcachetest.OK, statsigData, 1},
		{"stale copy, Statsig down", 24 * time.Hour, configcachetest.Fail, regionData, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := *published
			m.Holder, m.Synced = "another-proxy", time.Now().Add(-tc.age).UnixMilli()
			c := sharedCacheWith(t, up, connect, fmt.Sprintf("/new%d", i), slow)
			putManifest(t, c, key, &m)
			up.SetMode(tc.statsig)
			t.Cleanup(func() { up.SetMode(configcachetest.OK) })

			set, err := c.IDLists(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if l := set.Lists["vips"]; l == nil || string(l.Data) != tc.wantData {
				t.Fatalf("served %v, want %q", set.Lists["vips"], tc.wantData)
			}
			if n := up.Count(fmt.Sprintf("/new%d", i), "get_id_lists"); n != tc.wantAsks {
				t.Fatalf("the new proxy asked Statsig for the manifest %d times, want %d", n, tc.wantAsks)
			}
			if tc.statsig != configcachetest.OK {
				return
			}
			// Evaluations on the new proxy see the lists it serves.
			ev, err := c.Evaluator(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := evalcore.ParseUser([]byte(`{"userID":"u1"}`))
			if !ev.GateValue(u, "vip") {
				t.Fatal("u1 is in the list but fails the list gate")
			}
		})
	}
}

func TestUnusableRegionIDListsAreIgnored(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-idcorrupt"
	hash := wire.KeyHash(key)
	up.SetSpec(key, spec(1000, true))
	good := idLine("u1") + idLine("u2")
	up.SetIDList(key, "vips", []byte(good), "vips-1", 1000)
	// Nobody polls again within the test: only the manifests written below reach the proxies.
	slow := func(c *config.Config) { c.RuleSets.IDListInterval = time.Hour }
	holder := sharedCacheWith(t, up, connect, "/holder", slow)
	if _, err := holder.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	up.WaitFor(t, 5*time.Second, "the region's copy", func() bool { return regionManifest(t, holder, key) != nil })
	base := regionManifest(t, holder, key)
	follower := sharedCacheWith(t, up, connect, "/follower", slow)
	held, err := follower.IDLists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	obj := idObjectName(hash, "vips")
	longer := good + idLine("u3")
	entry := func(data string) idManifestList {
		return idManifestList{Name: "vips", FileID: "vips-1", CreationTime: 1000, Size: int64(len(data)), Digest: digestOf([]byte(data))}
	}
	put := func(data string) {
		if _, err := follower.share.obs.PutBytes(context.Background(), obj, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}

	for i, tc := range []struct {
		name    string
		damage  func(m *idManifest) []byte // changes the store; returns the raw manifest to write
		install bool
	}{
		{"manifest not JSON", func(m *idManifest) []byte { return []byte("<html>oops</html>") }, false},
		{"manifest entry without a fileID", func(m *idManifest) []byte {
			e := entry(longer)
			e.FileID = ""
			m.Lists["vips"] = e
			put(longer)
			return nil
		}, false},
		{"object with other bytes", func(m *idManifest) []byte {
			m.Lists["vips"] = entry(longer)
			put(good + idLine("u4")) // same length, other content
			return nil
		}, false},
		{"partial object", func(m *idManifest) []byte {
			m.Lists["vips"] = entry(longer)
			put(longer[:len(longer)-4])
			return nil
		}, false},
		{"object missing", func(m *idManifest) []byte {
			m.Lists["vips"] = entry(longer)
			if err := follower.share.obs.Delete(context.Background(), obj); err != nil {
				t.Fatal(err)
			}
			return nil
		}, false},
		{"object not an ID list", func(m *idManifest) []byte {
			m.Lists["vips"] = entry("<html>not a list</html>")
			put("<html>not a list</html>")
			return nil
		}, false},
		// The control: a sound copy is installed, so the cases above fail for their damage only.
		{"a sound copy", func(m *idManifest) []byte {
			m.Lists["vips"] = entry(longer)
			put(longer)
			return nil
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &idManifest{V: idManifestVersion, Holder: "another-proxy", Synced: base.Synced + int64(i) + 1, Lists: map[string]idManifestList{}}
			raw := tc.damage(m)
			if raw == nil {
				raw, _ = json.Marshal(m)
			}
			rejected := follower.m.idListSyncs.WithLabelValues("region", "rejected")
			before := counterValue(rejected)
			if _, err := follower.share.kv.Put(context.Background(), idsKey(hash), raw); err != nil {
				t.Fatal(err)
			}
			if tc.install {
				up.WaitFor(t, 5*time.Second, "the sound copy at the follower", func() bool {
					return heldIDLists(follower, key).Lists["vips"].Size() == len(longer)
				})
				if !heldIDLists(follower, key).Contains("vips", configcachetest.HashedID("u3")) {
					t.Fatal("the installed copy does not hold u3")
				}
				return
			}
			up.WaitFor(t, 5*time.Second, "the follower to reject the copy", func() bool { return counterValue(rejected) > before })
			if now := heldIDLists(follower, key); now != held {
				t.Fatalf("the follower replaced its lists with an unusable copy: %q", now.Lists["vips"].Data)
			}
			// A new proxy rejects it as well, and asks Statsig instead.
			prefix := fmt.Sprintf("/cold%d", i)
			cold := sharedCacheWith(t, up, connect, prefix, slow)
			set, err := cold.IDLists(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if string(set.Lists["vips"].Data) != good || up.Count(prefix, "get_id_lists") != 1 {
				t.Fatalf("new proxy served %q after %d manifest requests, want Statsig's lists after 1", set.Lists["vips"].Data, up.Count(prefix, "get_id_lists"))
			}
		})
	}
}

func TestFollowerPollsIDListsItselfWhileNATSIsDown(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-idnats"
	up.SetSpec(key, spec(1000, true))
	up.SetIDList(key, "vips", []byte(idLine("u1")), "vips-1", 1000)
	srv, err := natsutil.StartEmbedded(context.Background(), config.NATS{DataDir: t.TempDir(), Host: "127.0.0.1", Port: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			natsutil.Shutdown(srv)
		}
	})
	var conns []*nats.Conn
	connect := func() (jetstream.JetStream, int) {
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js, int(nc.MaxPayload())
	}
	longLease := func(c *config.Config) { c.RuleSets.Share.LeaseTTL = 3 * time.Second } // survives a stalled holder
	holder := sharedCacheWith(t, up, connect, "/holder", longLease)
	if _, err := holder.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	up.WaitFor(t, 5*time.Second, "the region's copy", func() bool { return regionManifest(t, holder, key) != nil })
	follower := sharedCacheWith(t, up, connect, "/follower", longLease)
	if _, err := follower.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if n := up.Count("/follower", "get_id_lists"); n != 0 {
		t.Fatalf("follower asked Statsig %d times with the region up", n)
	}

	natsutil.Shutdown(srv)
	stopped = true
	up.WaitFor(t, 5*time.Second, "the proxies to notice NATS is gone", func() bool {
		for _, nc := range conns {
			if nc.IsConnected() {
				return false
			}
		}
		return true
	})
	changed := idLine("u1") + idLine("u2")
	up.SetIDList(key, "vips", []byte(changed), "vips-1", 1000)
	up.WaitFor(t, 5*time.Second, "the change at the follower, from Statsig", func() bool {
		l := heldIDLists(follower, key).Lists["vips"]
		return l != nil && string(l.Data) == changed
	})
	if up.Count("/follower", "get_id_lists") == 0 {
		t.Fatal("the follower got the change without asking Statsig")
	}
}

func TestIDManifestDecoding(t *testing.T) {
	ok := idManifestList{Name: "l", FileID: "f", CreationTime: 1, Size: 3, Digest: digestOf([]byte("+a\n"))}
	for _, tc := range []struct {
		name string
		m    any
		want bool
	}{
		{"valid", idManifest{V: 1, Holder: "h", Synced: 5, Lists: map[string]idManifestList{"l": ok}}, true},
		{"no lists", idManifest{V: 1, Synced: 5}, true},
		{"other version", idManifest{V: 2, Synced: 5}, false},
		{"no sync time", idManifest{V: 1}, false},
		{"empty list key", idManifest{V: 1, Synced: 5, Lists: map[string]idManifestList{"": ok}}, false},
		{"no fileID", idManifest{V: 1, Synced: 5, Lists: map[string]idManifestList{"l": {Name: "l", Size: 3, Digest: ok.Digest}}}, false},
		{"negative size", idManifest{V: 1, Synced: 5, Lists: map[string]idManifestList{"l": {Name: "l", FileID: "f", Size: -1, Digest: ok.Digest}}}, false},
		{"too large", idManifest{V: 1, Synced: 5, Lists: map[string]idManifestList{"l": {Name: "l", FileID: "f", Size: maxUpstreamBody + 1, Digest: ok.Digest}}}, false},
		{"other digest", idManifest{V: 1, Synced: 5, Lists: map[string]idManifestList{"l": {Name: "l", FileID: "f", Size: 3, Digest: "MD5=x"}}}, false},
		{"not JSON", "{", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, _ := json.Marshal(tc.m)
			if s, isString := tc.m.(string); isString {
				raw = []byte(s)
			}
			_, err := decodeIDManifest(raw)
			if (err == nil) != tc.want {
				t.Fatalf("decode: %v, want ok=%v", err, tc.want)
			}
			if err != nil && !errors.Is(err, errBadRegionCopy) {
				t.Fatalf("error %v is not errBadRegionCopy", err)
			}
		})
	}
}

func TestListFromRegionParsesLikeADownload(t *testing.T) {
	v1 := idLine("a") + idLine("b")
	v2 := v1 + "-" + configcachetest.HashedID("a") + "\n" + idLine("c")
	entry := func(fileID, data string) idManifestList {
		return idManifestList{Name: "l", FileID: fileID, Size: int64(len(data)), Digest: digestOf([]byte(data))}
	}
	old := (&IDList{Name: "l", FileID: "f1"}).extend([]byte(v1), false)
	for _, tc := range []struct {
		name string
		want idManifestList
		data string
		old  *IDList
		in   []string
		out  []string
	}{
		{"first load", entry("f1", v1), v1, nil, []string{"a", "b"}, []string{"c"}},
		{"appended lines", entry("f1", v2), v2, old, []string{"b", "c"}, []string{"a"}},
		{"new file", entry("f2", idLine("c")), idLine("c"), old, []string{"c"}, []string{"a", "b"}},
		{"same file rewritten", entry("f1", idLine("b")), idLine("b"), old, []string{"b"}, []string{"a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listFromRegion(tc.want, []byte(tc.data), tc.old)
			for _, u := range tc.in {
				if !l.Contains(configcachetest.HashedID(u)) {
					t.Errorf("%s missing", u)
				}
			}
			for _, u := range tc.out {
				if l.Contains(configcachetest.HashedID(u)) {
					t.Errorf("%s present", u)
				}
			}
			if l.sha() != tc.want.Digest || string(l.Data) != tc.data {
				t.Errorf("digest %s data %q", l.sha(), l.Data)
			}
		})
	}
}

// TestLargeIDListCrossesTheRegion: a list larger than a NATS message (1 MiB by default) reaches a
// follower whole, and so does a later append.
func TestLargeIDListCrossesTheRegion(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-idlarge"
	up.SetSpec(key, spec(1000, true))
	up.SetIDList(key, "big", []byte(idLine("first-user")), "big-1", 1000)
	withInterval := func(c *config.Config) {
		c.RuleSets.IDListInterval = 300 * time.Millisecond
		// Downloading and parsing a MB-sized list under -race on a loaded machine can take seconds:
		// a holder that times out leaves a stale copy, and the follower then rightly asks Statsig.
		c.Upstream.Timeout = 2 * time.Second
		c.RuleSets.Share.LeaseTTL = 3 * time.Second
	}
	a := sharedCacheWith(t, up, connect, "/a", withInterval)
	b := sharedCacheWith(t, up, connect, "/b", withInterval)
	if _, err := a.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	up.WaitFor(t, 10*time.Second, "the region's copy", func() bool { return regionManifest(t, a, key) != nil })
	if _, err := b.IDLists(context.Background(), key); err != nil {
		t.Fatal(err)
	}

	// Statsig rewrites the list into a large file: the holder fetches it, the follower gets it
	// through the region. (A cold proxy gives the region only kvReadTimeout before asking Statsig.)
	var big strings.Builder
	for i := range 110_000 {
		big.WriteString(idLine(fmt.Sprintf("user-%d", i)))
	}
	data := big.String() // 1.1 MB: more than 1 MiB
	changed := time.Now()
	up.SetIDList(key, "big", []byte(data), "big-2", 2000)
	up.WaitFor(t, 20*time.Second, "the large list at the follower", func() bool {
		l := heldIDLists(b, key).Lists["big"]
		return l != nil && l.FileID == "big-2"
	})
	took := time.Since(changed)
	if l := heldIDLists(b, key).Lists["big"]; l.Size() != len(data) || l.Len() != 110_000 || !bytes.Equal(l.Data, []byte(data)) {
		t.Fatalf("follower's copy of the %d-byte list: %d bytes, %d ids", len(data), l.Size(), l.Len())
	}

	appended := data + idLine("late-user")
	up.SetIDList(key, "big", []byte(appended), "big-2", 2000)
	up.WaitFor(t, 20*time.Second, "the append at the follower", func() bool {
		return heldIDLists(b, key).Lists["big"].Size() == len(appended)
	})
	if !heldIDLists(b, key).Contains("big", configcachetest.HashedID("late-user")) {
		t.Fatal("the appended ID is missing at the follower")
	}
	if n := up.Count("/b", "get_id_lists") + up.Count("/b", "id_list_file"); n != 0 {
		t.Fatalf("the follower asked Statsig %d times", n)
	}
	t.Logf("a %d-byte list reached the follower %s after the change at Statsig (interval 300 ms)", len(data), took.Round(time.Millisecond))
}
