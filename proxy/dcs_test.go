package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/internal/wire"
)

// rsLogBuffer collects an App's logs from several goroutines.
type rsLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *rsLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *rsLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rsPoll is the proxy's poll interval in the rule-set tests.
const rsPoll = 500 * time.Millisecond

// rsConfig is a proxy configuration for tests: loopback ports, a temporary data dir, the fake
// Statsig as upstream, short intervals.
func rsConfig(t testing.TB, up *configcachetest.Upstream, mod func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.Proxy.AdminListen = "127.0.0.1:0"
	cfg.NATS.Port = 0
	cfg.NATS.DataDir = t.TempDir()
	cfg.Upstream.ConfigCDN = up.URL
	cfg.Upstream.API = up.URL
	cfg.Upstream.Events = up.URL
	cfg.Upstream.Timeout = time.Second // the lease (2 s) must outlast poll + jitter + timeout
	cfg.RuleSets.Offline = nil
	cfg.ClientKeys = nil
	cfg.RuleSets.PollInterval = rsPoll
	cfg.RuleSets.PollJitter = 50 * time.Millisecond
	cfg.RuleSets.IDListInterval = rsPoll
	cfg.RuleSets.Share.LeaseTTL = 2 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

// rsStartProxy starts a whole proxy in-process and returns it with its base URL and a function
// that stops it early (it is stopped at the end of the test anyway). Its logs are checked for
// secret keys when the test ends.
func rsStartProxy(t testing.TB, cfg config.Config) (*App, string, func()) {
	t.Helper()
	logs := &rsLogBuffer{}
	a, err := NewApp(context.Background(), AppOptions{
		Config:  cfg,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if strings.Contains(logs.String(), "secret-") {
			t.Errorf("a secret key was logged:\n%s", logs.String())
		}
	})
	return a, "http://" + a.Addr().String(), stop
}

// rsDo sends a request and returns status, headers and the body exactly as sent (no transparent
// gzip decoding).
func rsDo(t testing.TB, method, url string, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := rsRawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

var rsRawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}

func TestDCSEndpoints(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-dcs-endpoints"
	s := configcachetest.Spec{Time: 5000, Gates: []configcachetest.Gate{{Name: "g", Pass: true}}}
	up.SetSpec(key, s)
	up.SetSpec("secret-not-allowed", s)
	up.SetSpec("secret-down", s)
	cfg := rsConfig(t, up, func(c *config.Config) {
		c.AllowedSDKKeys = []string{key, "secret-unknown", "secret-down"}
	})
	app, base, _ := rsStartProxy(t, cfg)
	s.Key = key
	v1, v2 := s.V1(), s.V2()
	// Warm the cache, then make a never-seen key fail upstream.
	if st, _, _ := rsDo(t, "GET", base+"/v1/download_config_specs/"+key+".json", "", nil); st != 200 {
		t.Fatalf("warm-up: %d", st)
	}

	hk := map[string]string{"STATSIG-API-KEY": key}
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		want                     []byte // exact body, when set
		gzip                     bool
		errPart                  string // part of the JSON error reason
	}{
		{"v1 key in path", "GET", "/v1/download_config_specs/" + key + ".json", "", nil, 200, v1, false, ""},
		{"v2 key in path", "GET", "/v2/download_config_specs/" + key + ".json?supports_proto=true", "", nil, 200, v2, false, ""},
		{"v1 sinceTime 0", "GET", "/v1/download_config_specs/" + key + ".json?sinceTime=0", "", nil, 200, v1, false, ""},
		{"older sinceTime", "GET", "/v2/download_config_specs/" + key + ".json?sinceTime=4999&checksum=abc%3D", "", nil, 200, v2, false, ""},
		{"sinceTime equal", "GET", "/v1/download_config_specs/" + key + ".json?sinceTime=5000", "", nil, 200, []byte(`{"has_updates":false}`), false, ""},
		{"sinceTime newer", "GET", "/v2/download_config_specs/" + key + ".json?sinceTime=9000", "", nil, 200, []byte(`{"has_updates":false}`), false, ""},
		{"go-sdk DisableCDN", "GET", "/v1/download_config_specs?sinceTime=0", "", hk, 200, v1, false, ""},
		{"header wins over path", "GET", "/v1/download_config_specs/secret-whatever.json", "", hk, 200, v1, false, ""},
		{"POST sinceTime body", "POST", "/v1/download_config_specs", `{"sinceTime":5000,"statsigMetadata":{}}`, hk, 200, []byte(`{"has_updates":false}`), false, ""},
		{"POST empty body", "POST", "/v2/download_config_specs/" + key + ".json", "", nil, 200, v2, false, ""},
		{"gzip", "GET", "/v1/download_config_specs/" + key + ".json", "", map[string]string{"Accept-Encoding": "gzip, deflate"}, 200, v1, true, ""},
		{"gzip refused by q=0", "GET", "/v1/download_config_specs/" + key + ".json", "", map[string]string{"Accept-Encoding": "gzip;q=0, br"}, 200, v1, false, ""},
		{"server-core encodings", "GET", "/v2/download_config_specs/" + key + ".json", "", map[string]string{"Accept-Encoding": "statsig-br, gzip, deflate, br"}, 200, v2, true, ""},
		{"no key", "GET", "/v1/download_config_specs", "", nil, 401, nil, false, "missing SDK key"},
		{"client key", "GET", "/v1/download_config_specs/client-abc.json", "", nil, 403, nil, false, "client keys"},
		{"not a secret key", "GET", "/v2/download_config_specs/abc.json", "", nil, 401, nil, false, "secret"},
		{"not allowed", "GET", "/v1/download_config_specs/secret-not-allowed.json", "", nil, 401, nil, false, "allowed_sdk_keys"},
		{"refused by Statsig", "GET", "/v1/download_config_specs/secret-unknown.json", "", nil, 401, nil, false, "refused"},
		{"bad sinceTime", "GET", "/v1/download_config_specs/" + key + ".json?sinceTime=yesterday", "", nil, 400, nil, false, "sinceTime"},
		{"bad POST body", "POST", "/v1/download_config_specs", `{"sinceTime":`, hk, 400, nil, false, "JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, h, body := rsDo(t, tc.method, base+tc.path, tc.body, tc.hdr)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, body)
			}
			if tc.status != 200 {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, tc.errPart) {
					t.Fatalf("error body %s, want a JSON reason containing %q", body, tc.errPart)
				}
				return
			}
			if h.Get("Content-Length") == "" || h.Get("Content-Type") != "application/json" {
				t.Fatalf("headers: %v", h)
			}
			if tc.gzip != (h.Get("Content-Encoding") == "gzip") {
				t.Fatalf("Content-Encoding %q, gzip expected: %v", h.Get("Content-Encoding"), tc.gzip)
			}
			if tc.gzip {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, tc.want) {
				t.Fatalf("body:\n%s\nwant:\n%s", body, tc.want)
			}
			if bytes.Equal(tc.want, []byte(`{"has_updates":false}`)) {
				return
			}
			if h.Get("X-Since-Time") != "5000" || h.Get("Etag") == "" || h.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("headers: %v", h)
			}
		})
	}

	t.Run("etag", func(t *testing.T) {
		path := base + "/v1/download_config_specs/" + key + ".json"
		for _, ae := range []string{"", "gzip"} {
			_, h, _ := rsDo(t, "GET", path, "", map[string]string{"Accept-Encoding": ae})
			st, _, body := rsDo(t, "GET", path, "", map[string]string{"Accept-Encoding": ae, "If-None-Match": h.Get("Etag")})
			if st != http.StatusNotModified || len(body) != 0 {
				t.Fatalf("If-None-Match (%q): %d %q", ae, st, body)
			}
		}
		if st, _, _ := rsDo(t, "GET", path, "", map[string]string{"If-None-Match": `"other"`}); st != 200 {
			t.Fatalf("stale ETag: %d", st)
		}
	})

	t.Run("Statsig down for a new key", func(t *testing.T) {
		up.SetMode(configcachetest.Fail)
		defer up.SetMode(configcachetest.OK)
		st, h, body := rsDo(t, "GET", base+"/v2/download_config_specs/secret-down.json", "", nil)
		if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(string(body), "no cached rule set") {
			t.Fatalf("got %d %v %s", st, h, body)
		}
		// The warm key is still served while Statsig is down.
		if st, _, body := rsDo(t, "GET", base+"/v1/download_config_specs/"+key+".json", "", nil); st != 200 || !bytes.Equal(body, v1) {
			t.Fatalf("stale rule set not served: %d", st)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		st, _, body := rsDo(t, "GET", "http://"+app.AdminAddr().String()+"/metrics", "", nil)
		if st != 200 {
			t.Fatalf("metrics: %d", st)
		}
		m := string(body)
		for _, want := range []string{
			`sigedge_ruleset_age_seconds{format="v1",key="` + wire.KeyHash(key) + `"}`,
			`sigedge_ruleset_time_seconds{format="v2",key="` + wire.KeyHash(key) + `",source="upstream"} 5`,
			`sigedge_upstream_requests_total{endpoint="dcs_v1",outcome="ok"}`,
			`sigedge_upstream_request_duration_seconds_bucket{endpoint="dcs_v1",outcome="ok"`,
			`sigedge_ruleset_lookups_total{format="v1",result="hit"}`,
			`sigedge_sdk_ruleset_served_bytes_total{encoding="gzip",endpoint="dcs_v1"}`,
			`sigedge_sdk_ruleset_responses_total{endpoint="dcs_v1",result="not_modified"}`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(m, "secret-") {
			t.Error("a secret key appears in the metrics")
		}
	})

	if n := up.Count("", "dcs_v1") + up.Count("", "dcs_v2"); n > 20 {
		t.Fatalf("the endpoint tests caused %d upstream requests", n)
	}
	for _, r := range up.Requests(nil) {
		if r.Key == "secret-not-allowed" || strings.HasPrefix(r.Key, "client-") {
			t.Fatalf("a refused key reached Statsig: %+v", r.Endpoint)
		}
	}
}

func TestIDListEndpoints(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-idlist-endpoints"
	up.SetSpec(key, configcachetest.Spec{Time: 1, Gates: []configcachetest.Gate{{Name: "g", Pass: true, IDList: "vips"}}})
	content := configcachetest.IDListLine("u1") + configcachetest.IDListLine("u2")
	up.SetIDList(key, "vips", []byte(content), "fileA", 1000)

	for _, public := range []string{"", "https://edge.example.com/statsig/"} {
		t.Run("public_url="+public, func(t *testing.T) {
			cfg := rsConfig(t, up, func(c *config.Config) { c.Proxy.PublicURL = public })
			_, base, _ := rsStartProxy(t, cfg)
			for _, form := range []struct{ method, path string }{
				{"POST", "/v1/get_id_lists"},
				{"GET", "/v1/get_id_lists/" + key + ".json"},
			} {
				hdr := map[string]string{"STATSIG-API-KEY": key}
				if form.method == "GET" {
					hdr = nil
				}
				st, _, body := rsDo(t, form.method, base+form.path, "{}", hdr)
				if st != 200 {
					t.Fatalf("%s %s: %d %s", form.method, form.path, st, body)
				}
				var man map[string]idListManifestEntry
				if err := json.Unmarshal(body, &man); err != nil {
					t.Fatal(err)
				}
				l := man["vips"]
				wantBase := strings.TrimSuffix(public, "/")
				if wantBase == "" {
					wantBase = base
				}
				if l.Name != "vips" || l.Size != len(content) || l.FileID != "fileA" || l.CreationTime != 1000 ||
					!strings.HasPrefix(l.URL, wantBase+"/v1/download_id_list_file/") {
					t.Fatalf("manifest entry %+v (base %s)", l, wantBase)
				}
			}
			st, _, body := rsDo(t, "POST", base+"/v1/get_id_lists", "{}", map[string]string{"STATSIG-API-KEY": key})
			if st != 200 {
				t.Fatal(st)
			}
			var man map[string]idListManifestEntry
			_ = json.Unmarshal(body, &man)
			file := base + strings.TrimPrefix(man["vips"].URL, strings.TrimSuffix(public, "/"))
			if public == "" {
				file = man["vips"].URL
			}
			line := len(configcachetest.IDListLine("u1"))
			fileCases := []struct {
				name   string
				url    string
				hdr    map[string]string
				status int
				want   string
			}{
				{"whole", file, nil, 200, content},
				{"Range header", file, map[string]string{"Range": fmt.Sprintf("bytes=%d-", line)}, 206, content[line:]},
				{"range query", file + fmt.Sprintf("?range=%d-", line), nil, 206, content[line:]},
				{"from 0 with gzip accepted", file, map[string]string{"Range": "bytes=0-", "Accept-Encoding": "gzip"}, 206, content},
				{"past the end", file, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(content))}, 416, ""},
				{"bad range query", file + "?range=abc", nil, 400, ""},
				{"replaced file", strings.Replace(file, "/fileA/", "/fileB/", 1), nil, 404, ""},
				{"unknown key hash", strings.Replace(file, "/download_id_list_file/", "/download_id_list_file/000000000000", 1), nil, 404, ""},
				{"key of another hash", file, map[string]string{"STATSIG-API-KEY": "secret-other"}, 401, ""},
			}
			for _, fc := range fileCases {
				st, h, body := rsDo(t, "GET", fc.url, "", fc.hdr)
				if st != fc.status {
					t.Fatalf("%s: status %d, want %d (%s)", fc.name, st, fc.status, body)
				}
				if fc.status/100 != 2 {
					continue
				}
				if string(body) != fc.want || h.Get("Content-Length") != fmt.Sprint(len(fc.want)) || h.Get("Content-Encoding") != "" {
					t.Fatalf("%s: body %q, Content-Length %s, Content-Encoding %q", fc.name, body, h.Get("Content-Length"), h.Get("Content-Encoding"))
				}
			}
		})
	}
}

func TestHundredPollersCauseOneUpstreamPollPerInterval(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-hundred"
	up.SetSpec(key, configcachetest.Spec{Time: 1000, Gates: []configcachetest.Gate{{Name: "g", Pass: true}}})
	cfg := rsConfig(t, up, nil)
	_, base, _ := rsStartProxy(t, cfg)

	// 100 pollers speaking go-sdk's HTTP: GET {API}/download_config_specs/{key}.json?sinceTime=N with
	// the key header, sinceTime = the time of the last payload applied, every 50 ms for 8 intervals.
	const pollers = 100
	deadline := time.Now().Add(8 * rsPoll)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers}, Timeout: 5 * time.Second}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, pollers)
	for i := 0; i < pollers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var since int64
			for n := 0; n < 1000 && time.Now().Before(deadline); n++ {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/download_config_specs/%s.json?sinceTime=%d", base, key, since), nil)
				req.Header.Set("STATSIG-API-KEY", key)
				req.Header.Set("STATSIG-SDK-TYPE", "go-sdk")
				res, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				var body struct {
					HasUpdates bool  `json:"has_updates"`
					Time       int64 `json:"time"`
				}
				err = json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 {
					errs <- fmt.Errorf("status %d, decode %v", res.StatusCode, err)
					return
				}
				if body.HasUpdates {
					since = body.Time
				}
				time.Sleep(50 * time.Millisecond) // the pollers' own interval, not a wait for an event
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	reqs := up.Requests(func(r configcachetest.Request) bool { return r.Endpoint == "dcs_v1" })
	if len(reqs) == 0 || reqs[0].SinceTime != 0 {
		t.Fatal("no cold fetch")
	}
	cold := 0
	for _, r := range reqs {
		if r.SinceTime == 0 {
			cold++
		}
	}
	if cold != 1 {
		t.Fatalf("100 concurrent first requests caused %d cold fetches, want 1", cold)
	}
	// Exactly one poll per interval: consecutive polls are at least an interval minus the jitter
	// apart, so their number is bounded by the elapsed time.
	minGap := cfg.RuleSets.PollInterval - 2*cfg.RuleSets.PollJitter
	for i := 2; i < len(reqs); i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < minGap {
			t.Fatalf("polls %d and %d only %s apart (want ≥ %s): more than one poll per interval", i-1, i, gap, minGap)
		}
	}
	maxPolls := int(elapsed/minGap) + 1
	if polls := len(reqs) - 1; polls < 1 || polls > maxPolls {
		t.Fatalf("%d polls in %s, want 1..%d", polls, elapsed, maxPolls)
	}
	t.Logf("100 pollers for %s: %d upstream requests (1 cold + %d polls)", elapsed.Round(time.Millisecond), len(reqs), len(reqs)-1)
}

func TestTwoProxiesShareOneRegion(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-region"
	up.SetSpec(key, configcachetest.Spec{Time: 1000, Gates: []configcachetest.Gate{{Name: "g", Pass: true}}})
	// A JetStream server of its own, so either proxy can stop without taking the bucket along.
	srv, err := natsutil.StartEmbedded(context.Background(), config.NATS{DataDir: t.TempDir(), Host: "127.0.0.1", Port: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	regional := func(prefix string) config.Config {
		return rsConfig(t, up, func(c *config.Config) {
			c.NATS.Embedded = false
			c.NATS.URLs = []string{srv.ClientURL()}
			c.Upstream.ConfigCDN = up.URL + prefix // tells the proxies' requests apart at the fake
			c.RuleSets.Share.Enabled = true
		})
	}
	_, baseA, stopA := rsStartProxy(t, regional("/a"))
	_, baseB, stopB := rsStartProxy(t, regional("/b"))
	get := func(base string) (int64, error) {
		st, _, body := rsDo(t, "GET", base+"/v2/download_config_specs/"+key+".json", "", nil)
		if st != 200 {
			return 0, fmt.Errorf("status %d: %s", st, body)
		}
		var v struct {
			Time int64 `json:"time"`
		}
		return v.Time, json.Unmarshal(body, &v)
	}
	if tm, err := get(baseA); err != nil || tm != 1000 {
		t.Fatalf("proxy a: %d %v", tm, err)
	}
	if tm, err := get(baseB); err != nil || tm != 1000 {
		t.Fatalf("proxy b: %d %v", tm, err)
	}
	if n := up.Count("/b", "dcs_v2"); n != 0 {
		t.Fatalf("proxy b asked Statsig (%d) although the region's bucket had the rule set", n)
	}
	polls := func(prefix string) int {
		return len(up.Requests(func(r configcachetest.Request) bool {
			return r.Prefix == prefix && r.Endpoint == "dcs_v2" && r.SinceTime > 0
		}))
	}
	up.WaitFor(t, 15*time.Second, "4 region polls", func() bool { return polls("/a")+polls("/b") >= 4 })
	if polls("/a") > 0 && polls("/b") > 0 {
		t.Fatalf("both proxies polled Statsig (a %d, b %d)", polls("/a"), polls("/b"))
	}
	stopHolder, followerBase, followerPrefix := stopA, baseB, "/b"
	if polls("/b") > 0 {
		stopHolder, followerBase, followerPrefix = stopB, baseA, "/a"
	}

	// The follower serves a change from the bucket within a poll interval (+1 s).
	up.SetSpec(key, configcachetest.Spec{Time: 2000, Gates: []configcachetest.Gate{{Name: "g", Pass: false}}})
	up.WaitFor(t, rsPoll+time.Second, "the change at the follower", func() bool {
		tm, err := get(followerBase)
		return err == nil && tm == 2000
	})

	// Stop the poller's App: the follower takes over within the lease TTL.
	stopHolder()
	stoppedAt := time.Now()
	ttl := regional("/x").RuleSets.Share.LeaseTTL
	up.WaitFor(t, ttl+rsPoll+time.Second, "the follower to poll", func() bool { return polls(followerPrefix) > 0 })
	t.Logf("follower took over %s after the poller stopped", time.Since(stoppedAt).Round(time.Millisecond))
	up.SetSpec(key, configcachetest.Spec{Time: 3000, Gates: []configcachetest.Gate{{Name: "g", Pass: true}}})
	up.WaitFor(t, rsPoll+time.Second, "the next change at the new poller", func() bool {
		tm, err := get(followerBase)
		return err == nil && tm == 3000
	})
}
