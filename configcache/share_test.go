package configcache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
)

// testJetStream starts a JetStream server on 127.0.0.1 and returns a function that opens a new
// client connection to it (each proxy has its own).
func testJetStream(t *testing.T) func() (jetstream.JetStream, int) {
	t.Helper()
	srv, err := natsutil.StartEmbedded(context.Background(), config.NATS{DataDir: t.TempDir(), Host: "127.0.0.1", Port: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	return func() (jetstream.JetStream, int) {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js, int(nc.MaxPayload())
	}
}

func sharedCache(t *testing.T, up *configcachetest.Upstream, connect func() (jetstream.JetStream, int), prefix string) *testCache {
	t.Helper()
	return sharedCacheWith(t, up, connect, prefix, nil)
}

// sharedCacheWith is sharedCache with more settings; prefix tells its requests (rule sets and ID
// lists) apart at the fake.
func sharedCacheWith(t *testing.T, up *configcachetest.Upstream, connect func() (jetstream.JetStream, int), prefix string, mod func(*config.Config)) *testCache {
	t.Helper()
	cfg := testConfig(t, up, func(c *config.Config) {
		c.Upstream.ConfigCDN = up.URL + prefix
		c.Upstream.API = up.URL + prefix
		c.RuleSets.Share.Enabled = true
		c.RuleSets.Share.LeaseTTL = time.Second
		c.Upstream.Timeout = 500 * time.Millisecond // the lease must outlast poll + jitter + timeout
		if mod != nil {
			mod(c)
		}
	})
	js, maxPayload := connect()
	return newTestCache(t, Options{Config: cfg, JetStream: js, MaxShareValue: maxPayload})
}

func TestSharingOneRegionPollerAndTakeover(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-shared"
	up.SetSpec(key, spec(1000, true))
	a := sharedCache(t, up, connect, "/a")
	b := sharedCache(t, up, connect, "/b")
	ctx := context.Background()

	ea, err := a.Get(ctx, key, FormatV2)
	if err != nil || ea.Source != SourceUpstream {
		t.Fatalf("first proxy: %v, source %v", err, ea)
	}
	eb, err := b.Get(ctx, key, FormatV2)
	if err != nil {
		t.Fatal(err)
	}
	if eb.Source != SourceShare || eb.Time != 1000 || eb.ETag != ea.ETag {
		t.Fatalf("second proxy: source %s time %d, want the first proxy's rule set from KV", eb.Source, eb.Time)
	}
	if n := up.Count("/b", "dcs_v2"); n != 0 {
		t.Fatalf("the second proxy asked Statsig %d times for a key the bucket holds", n)
	}

	polls := func(prefix string) int {
		return len(up.Requests(func(r Request) bool { return r.Prefix == prefix && r.Endpoint == "dcs_v2" && r.SinceTime > 0 }))
	}
	up.WaitFor(t, 10*time.Second, "5 region polls", func() bool { return polls("/a")+polls("/b") >= 5 })
	pa, pb := polls("/a"), polls("/b")
	if pa > 0 && pb > 0 {
		t.Fatalf("both proxies polled Statsig (a %d, b %d): the lease did not hold", pa, pb)
	}
	holder, follower := a, b
	holderPrefix, followerPrefix := "/a", "/b"
	if pb > 0 {
		holder, follower, holderPrefix, followerPrefix = b, a, "/b", "/a"
	}
	_ = holderPrefix

	// A change reaches the follower through the bucket.
	up.SetSpec(key, spec(2000, false))
	up.WaitFor(t, 3*time.Second, "the change at the follower", func() bool {
		e, err := follower.Get(ctx, key, FormatV2)
		return err == nil && e.Time == 2000 && e.Source == SourceShare
	})

	// The holder goes away: the follower takes the lease over and polls.
	holder.Close()
	up.WaitFor(t, 3*time.Second, "the follower to take over polling", func() bool { return polls(followerPrefix) > 0 })
	up.SetSpec(key, spec(3000, true))
	up.WaitFor(t, 3*time.Second, "the change at the new holder", func() bool {
		e, err := follower.Get(ctx, key, FormatV2)
		return err == nil && e.Time == 3000 && e.Source == SourceUpstream
	})
}

func TestLeaseHasExactlyOneWinner(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	caches := []*testCache{sharedCache(t, up, connect, "/a"), sharedCache(t, up, connect, "/b"), sharedCache(t, up, connect, "/c")}
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("secret-contended-%d", i)
		var wg sync.WaitGroup
		won := make([]bool, len(caches))
		for j, c := range caches {
			ks := c.newKeyState(key) // not registered: no poll goroutine competes with the test
			wg.Add(1)
			go func() {
				defer wg.Done()
				won[j] = c.share.lead(ks, FormatV1)
			}()
		}
		wg.Wait()
		n := 0
		for _, w := range won {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d proxies won the lease, want exactly 1", i, n)
		}
	}
}

func TestRestartedProxyServesFromTheBucketWhileStatsigIsDown(t *testing.T) {
	up := configcachetest.New(t)
	connect := testJetStream(t)
	key := "secret-restart"
	up.SetSpec(key, spec(1000, true))
	first := sharedCache(t, up, connect, "/a")
	if _, err := first.Get(context.Background(), key, FormatV1); err != nil {
		t.Fatal(err)
	}
	first.Close()
	up.SetMode(configcachetest.Fail)

	restarted := sharedCache(t, up, connect, "/b")
	began := time.Now()
	e, err := restarted.Get(context.Background(), key, FormatV1)
	if err != nil {
		t.Fatalf("restarted proxy with Statsig down: %v", err)
	}
	if e.Time != 1000 || e.Source != SourceShare {
		t.Fatalf("served time %d from %s", e.Time, e.Source)
	}
	if n := up.Count("/b", "dcs_v1"); n != 0 {
		t.Fatalf("restarted proxy asked Statsig first (%d requests)", n)
	}
	t.Logf("served from KV %s after start", time.Since(began))
}

func TestValueEncoding(t *testing.T) {
	e, err := newEntry([]byte(`{"time":5,"feature_gates":{}}`), FormatV2, parsedHead{time: 5, checksum: "abc", format: FormatV2}, basicModel{}, SourceUpstream)
	if err != nil {
		t.Fatal(err)
	}
	v := encodeValue(e)
	tm, cs, gz, err := decodeValue(v, true)
	if err != nil || tm != 5 || cs != "abc" || string(gz) != string(e.Gzip) {
		t.Fatalf("round trip: %d %q %v", tm, cs, err)
	}
	for _, bad := range [][]byte{nil, []byte("SGE1"), []byte("XXXX0123456789"), append([]byte("SGE1\x00\x00\x00\x00\x00\x00\x00\x05\x00\x09"), 'a')} {
		if _, _, _, err := decodeValue(bad, true); err == nil {
			t.Errorf("decodeValue(%q) accepted", bad)
		}
	}
}
