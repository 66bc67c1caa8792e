package configcache

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/evalcore"
	"github.com/sigedge/sigedge/internal/config"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	// Write then rename, as editors and ConfigMap updates do, so the watcher never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func offlineCache(t *testing.T, up *configcachetest.Upstream, key, file string) *testCache {
	t.Helper()
	cfg := testConfig(t, up, func(c *config.Config) {
		c.RuleSets.Offline = []config.OfflineRuleSet{{SDKKey: key, File: file}}
	})
	return newTestCache(t, Options{Config: cfg, OfflineCheckInterval: 20 * time.Millisecond})
}

func topLevel(t *testing.T, payload []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("payload is not a JSON object: %v", err)
	}
	return m
}

func TestOfflineFileIsServedInBothFormats(t *testing.T) {
	for _, native := range []Format{FormatV1, FormatV2} {
		t.Run("file in "+native.String(), func(t *testing.T) {
			up := configcachetest.New(t)
			key := "secret-offline"
			file := filepath.Join(t.TempDir(), "rules.json")
			s := configcachetest.Spec{Time: 1234, Key: "secret-someone-else", Gates: []configcachetest.Gate{{Name: "on", Pass: true}}}
			src := s.V2()
			if native == FormatV1 {
				src = s.V1() // carries another key's hashed_sdk_key_used
			}
			writeFile(t, file, src)
			c := offlineCache(t, up, key, file)
			if err := c.Ready(); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			for _, f := range []Format{FormatV1, FormatV2} {
				e, err := c.Get(context.Background(), key, f)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				h, err := parseHead(e.Payload)
				if err != nil || h.format != f || h.time != 1234 || e.Time != 1234 {
					t.Fatalf("%s: served %s time %d (err %v)", f, h.format, h.time, err)
				}
				if e.Source != SourceOffline {
					t.Fatalf("source %s", e.Source)
				}
				if f == FormatV1 {
					if raw, ok := topLevel(t, e.Payload)["hashed_sdk_key_used"]; ok && string(raw) != `"`+djb2(key)+`"` {
						t.Fatalf("v1 hashed_sdk_key_used %s, want %s (legacy SDKs reject a mismatch)", raw, djb2(key))
					}
				}
				rs, ok := e.Model.(*evalcore.RuleSet)
				if !ok {
					t.Fatalf("model is %T", e.Model)
				}
				ev := evalcore.NewEvaluator(rs, evalcore.EvaluatorOptions{})
				u, err := evalcore.ParseUser([]byte(`{"userID":"u1"}`))
				if err != nil {
					t.Fatal(err)
				}
				if !ev.GateValue(u, "on") {
					t.Fatalf("%s: gate does not pass", f)
				}
			}
			if n := len(up.Requests(nil)); n != 0 {
				t.Fatalf("offline key reached upstream %d times", n)
			}
		})
	}
}

func TestOfflineFileIsReloadedWhenItChanges(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-reload"
	file := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, file, spec(1000, true).V2())
	c := offlineCache(t, up, key, file)
	served := func() int64 {
		e, err := c.Get(context.Background(), key, FormatV1)
		if err != nil {
			t.Fatal(err)
		}
		return e.Time
	}

	writeFile(t, file, spec(2000, false).V2())
	up.WaitFor(t, 5*time.Second, "reload with the newer time", func() bool { return served() == 2000 })

	// Edited without a newer time: served one millisecond newer, or polling SDKs never see it.
	writeFile(t, file, configcachetest.Spec{Time: 2000, Gates: []configcachetest.Gate{{Name: "other", Pass: true}}}.V2())
	up.WaitFor(t, 5*time.Second, "reload with a bumped time", func() bool { return served() == 2001 })
	e, _ := c.Get(context.Background(), key, FormatV2)
	if string(topLevel(t, e.Payload)["time"]) != "2001" {
		t.Fatalf("payload time not bumped: %s", topLevel(t, e.Payload)["time"])
	}

	// A broken edit keeps the last good version and the proxy ready.
	errs := c.m.offlineReloads.WithLabelValues("error")
	writeFile(t, file, []byte(`{"feature_gates": [`))
	up.WaitFor(t, 5*time.Second, "the failed reload", func() bool { return counterValue(errs) >= 1 })
	if got := served(); got != 2001 {
		t.Fatalf("after a broken edit: time %d, want 2001", got)
	}
	if err := c.Ready(); err != nil {
		t.Fatalf("a broken edit after a good load made the proxy unready: %v", err)
	}
}

func TestOfflineReadiness(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-late"
	file := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, file, spec(1000, true).V2())
	cfg := testConfig(t, up, func(c *config.Config) { c.RuleSets.Offline = []config.OfflineRuleSet{{SDKKey: key, File: file}} })
	if err := os.WriteFile(file, []byte("not json"), 0o644); err != nil { // broken after validation
		t.Fatal(err)
	}
	c := newTestCache(t, Options{Config: cfg, OfflineCheckInterval: 20 * time.Millisecond})
	if err := c.Ready(); err == nil {
		t.Fatal("ready with an unloadable offline rule set")
	}
	if _, err := c.Get(context.Background(), key, FormatV2); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get before the load: %v", err)
	}
	writeFile(t, file, spec(1000, true).V2())
	up.WaitFor(t, 5*time.Second, "readiness", func() bool { return c.Ready() == nil })
}

func TestOfflineWithoutConverterServesOneFormat(t *testing.T) {
	up := configcachetest.New(t)
	key := "secret-noconv"
	file := filepath.Join(t.TempDir(), "rules.json")
	writeFile(t, file, spec(1000, true).V2())
	cfg := testConfig(t, up, func(c *config.Config) { c.RuleSets.Offline = []config.OfflineRuleSet{{SDKKey: key, File: file}} })
	c := newTestCache(t, Options{Config: cfg, Convert: func([]byte, Format) ([]byte, error) { return nil, errors.New("no converter") }})
	if _, err := c.Get(context.Background(), key, FormatV2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), key, FormatV1); !errors.Is(err, ErrFormatUnavailable) {
		t.Fatalf("v1 without conversion: %v", err)
	}
}
