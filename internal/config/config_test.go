package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the module root, where config.example.yaml lives.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestExampleFileLoadsAndMatchesDefaults(t *testing.T) {
	root := repoRoot(t)
	t.Chdir(root) // the example names its rule-set file relative to the repo root
	cfg, err := Load("config.example.yaml", nil)
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	// The example documents the defaults: apart from the demo keys it must not change any value.
	want := Default()
	want.RuleSets.Offline = []OfflineRuleSet{{SDKKey: "secret-example", File: "examples/example-rules.json"}}
	want.RuleSets.Environments = map[string]string{}
	want.ClientKeys = map[string]string{"client-example": "secret-example"}
	want.AllowedSDKKeys = []string{}
	want.NATS.URLs = []string{}
	if got, w := strings.Join(dump(cfg), "\n"), strings.Join(dump(want), "\n"); got != w {
		t.Fatalf("config.example.yaml differs from Default():\n got: %s\nwant: %s", got, w)
	}
}

// TestExampleDocumentsEveryField keeps config.example.yaml complete: every field of the schema must
// appear in it.
func TestExampleDocumentsEveryField(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, f := range EnvVars() {
		path := f[0]
		leaf := path[strings.LastIndex(path, ".")+1:]
		if !strings.Contains(text, leaf+":") {
			t.Errorf("config.example.yaml does not document %s", path)
		}
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the one-line error
	}{
		{"bad yaml", "log: [unclosed", []string{"invalid YAML"}},
		{"unknown field", "proxy:\n  listne: :8000\n", []string{"invalid YAML", "listne"}},
		{"negative interval", "rulesets:\n  poll_interval: -5s\n", []string{"rulesets.poll_interval", "positive"}},
		{"bad duration", "rulesets:\n  poll_interval: often\n", []string{"invalid YAML"}},
		{"bad level", "log:\n  level: loud\n", []string{"log.level", "loud"}},
		{"bad listen", "proxy:\n  listen: eight-thousand\n", []string{"proxy.listen"}},
		{"external without urls", "nats:\n  embedded: false\n", []string{"nats.urls"}},
		{"bad nats url", "nats:\n  embedded: false\n  urls: [http://x:4222]\n", []string{"nats.urls[0]"}},
		{"replicas embedded", "nats:\n  stream:\n    replicas: 3\n", []string{"nats.stream.replicas", "embedded"}},
		{"replicas range", "nats:\n  embedded: false\n  urls: [nats://a:4222]\n  stream:\n    replicas: 9\n", []string{"nats.stream.replicas", "1..5"}},
		{"compression", "nats:\n  stream:\n    compression: gzip\n", []string{"nats.stream.compression", "gzip"}},
		{"client key mapping", "client_keys:\n  client-a: notsecret\n", []string{"client_keys.client-a", "secret-"}},
		{"offline missing file", "rulesets:\n  offline:\n    - sdk_key: secret-x\n      file: /nonexistent/rules.json\n", []string{"rulesets.offline[0].file", "cannot be read"}},
		{"offline bad key", "rulesets:\n  offline:\n    - sdk_key: client-x\n      file: /dev/null\n", []string{"rulesets.offline[0].sdk_key"}},
		{"bad size", "limits:\n  max_body_bytes: lots\n", []string{"invalid YAML", "not a size"}},
		{"tiny body limit", "limits:\n  max_body_bytes: 10\n", []string{"limits.max_body_bytes"}},
		{"in-flight below two bodies", "limits:\n  max_in_flight_event_bytes: 15MiB\n", []string{"limits.max_in_flight_event_bytes", "twice limits.max_body_bytes (10MiB)"}},
		{"ack wait vs timeout", "forwarder:\n  ack_wait: 10s\n  request_timeout: 30s\n", []string{"forwarder.ack_wait"}},
		{"forwarder concurrency", "forwarder:\n  concurrency: 0\n", []string{"forwarder.concurrency", "1..1024"}},
		{"forwarder max ack pending", "forwarder:\n  max_ack_pending: -1\n", []string{"forwarder.max_ack_pending", "positive"}},
		{"lease vs poll", "rulesets:\n  share:\n    lease_ttl: 5s\n", []string{"rulesets.share.lease_ttl"}},
		{"publish timeout", "nats:\n  publish_timeout: 0s\n", []string{"nats.publish_timeout", "positive"}},
		{"publish vs write timeout", "nats:\n  publish_timeout: 30s\n", []string{"nats.publish_timeout", "proxy.write_timeout"}},
		{"placement embedded", "nats:\n  stream:\n    placement:\n      cluster: east\n", []string{"nats.stream.placement", "embedded"}},
		{"placement cluster", "nats:\n  embedded: false\n  urls: [nats://a:4222]\n  stream:\n    placement:\n      cluster: east west\n", []string{"nats.stream.placement.cluster"}},
		{"placement tag", "nats:\n  embedded: false\n  urls: [nats://a:4222]\n  stream:\n    placement:\n      tags: [\"az:a\", \"\"]\n", []string{"nats.stream.placement.tags[1]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestValidateReturnsFieldErrors(t *testing.T) {
	cfg := Default()
	cfg.RuleSets.PollInterval = 0
	cfg.Limits.MaxSDKKeys = -1
	err := cfg.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a *FieldError, got %T %v", err, err)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) < 2 {
		t.Fatalf("want both problems, got %v", err)
	}
	fields := map[string]bool{}
	for _, e := range es {
		fields[e.Field] = true
	}
	for _, f := range []string{"rulesets.poll_interval", "limits.max_sdk_keys"} {
		if !fields[f] {
			t.Errorf("missing error for %s in %v", f, err)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rules, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("upstream:\n  api: https://file.example\nlog:\n  level: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=/root", // unrelated variables are ignored
		"SIGEDGE_UPSTREAM_API=https://env.example",
		"SIGEDGE_RULESETS_POLL_INTERVAL=3s",
		"SIGEDGE_NATS_EMBEDDED=false",
		"SIGEDGE_NATS_URLS=nats://a:4222, nats://b:4222",
		"SIGEDGE_NATS_STREAM_REPLICAS=3",
		"SIGEDGE_NATS_STREAM_PLACEMENT_TAGS=az:a,ssd",
		"SIGEDGE_LIMITS_MAX_BODY_BYTES=2MiB",
		"SIGEDGE_CLIENT_KEYS=client-a=secret-a,client-b=secret-b",
		"SIGEDGE_RULESETS_OFFLINE=[{\"sdk_key\":\"secret-a\",\"file\":\"" + rules + "\"}]",
		"SIGEDGE_FORWARDER_REPLAY_RATE=2.5",
	}
	cfg, err := Load(file, env)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"env wins over file", cfg.Upstream.API, "https://env.example"},
		{"file wins over default", cfg.Log.Level, "warn"},
		{"duration", cfg.RuleSets.PollInterval, 3 * time.Second},
		{"bool", cfg.NATS.Embedded, false},
		{"list", strings.Join(cfg.NATS.URLs, "|"), "nats://a:4222|nats://b:4222"},
		{"int", cfg.NATS.Stream.Replicas, 3},
		{"nested list", strings.Join(cfg.NATS.Stream.Placement.Tags, "|"), "az:a|ssd"},
		{"size", cfg.Limits.MaxBodyBytes, 2 * MiB},
		{"map", cfg.ClientKeys["client-b"], "secret-b"},
		{"object list", len(cfg.RuleSets.Offline), 1},
		{"float", cfg.Forwarder.ReplayRate, 2.5},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestKubernetesServiceLinksAreIgnored(t *testing.T) {
	env := []string{
		"SIGEDGE_PROXY_SERVICE_HOST=10.0.0.1", "SIGEDGE_PROXY_SERVICE_PORT=8000", "SIGEDGE_PROXY_SERVICE_PORT_HTTP=8000",
		"SIGEDGE_PROXY_PORT=tcp://10.0.0.1:8000", "SIGEDGE_PROXY_PORT_8000_TCP=tcp://10.0.0.1:8000",
		"SIGEDGE_PROXY_PORT_8000_TCP_ADDR=10.0.0.1", "SIGEDGE_PROXY_PORT_8000_TCP_PROTO=tcp",
	}
	if _, err := Load("", env); err != nil {
		t.Fatalf("service-link variables must be ignored: %v", err)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct{ env, want string }{
		{"SIGEDGE_UPSTREAM_APII=x", "SIGEDGE_UPSTREAM_APII: unknown environment variable"},
		{"SIGEDGE_RULESETS_POLL_INTERVAL=soon", "rulesets.poll_interval (from SIGEDGE_RULESETS_POLL_INTERVAL)"},
		{"SIGEDGE_NATS_EMBEDDED=maybe", "nats.embedded"},
		{"SIGEDGE_CLIENT_KEYS=client-a", "KEY=VALUE"},
		{"SIGEDGE_RULESETS_OFFLINE=not json", "JSON list"},
	}
	for _, tc := range tests {
		_, err := Load("", []string{tc.env})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.env, err, tc.want)
		}
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RuleSets.PollInterval != 10*time.Second || cfg.Forwarder.FlushInterval != time.Minute || !cfg.NATS.Embedded {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1024", 1024, true}, {"10MiB", 10 * MiB, true}, {"1GiB", GiB, true}, {"512k", 512 * KiB, true},
		{"5MB", 5_000_000, true}, {" 2 mib ", 2 * MiB, true}, {"1.5KiB", 1536, true},
		{"", 0, false}, {"ten", 0, false}, {"1e30GiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := (10 * MiB).String(); s != "10MiB" {
		t.Errorf("String: %s", s)
	}
}

func TestSecretsAreRedactedInErrors(t *testing.T) {
	_, err := Parse([]byte("client_keys:\n  client-abc: super-secret-value-123456\n"))
	if err == nil || strings.Contains(err.Error(), "super-secret-value-123456") {
		t.Fatalf("secret leaked or no error: %v", err)
	}
}

// dump renders the scalar fields of cfg as path=value lines, for readable diffs.
func dump(cfg Config) []string {
	var out []string
	for _, f := range EnvVars() {
		out = append(out, f[0]+"="+valueAt(cfg, f[0]))
	}
	return out
}

func valueAt(cfg Config, path string) string {
	var out string
	walkFields(reflect.TypeOf(cfg), "", func(p string, index []int, _ reflect.Type) {
		if p == path {
			out = fmt.Sprint(reflect.ValueOf(cfg).FieldByIndex(index).Interface())
		}
	})
	return out
}
