package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
	"github.com/sigedge/sigedge/internal/wire"
)

// startEvalApp starts a whole proxy serving the bundled example offline for secret-example.
func startEvalApp(t *testing.T) (*App, string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cfg := config.Default()
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.Proxy.AdminListen = "127.0.0.1:0"
	cfg.NATS.Port = 0
	cfg.NATS.DataDir = t.TempDir()
	cfg.RuleSets.Offline = []config.OfflineRuleSet{{SDKKey: "secret-example", File: filepath.Join(filepath.Dir(file), "..", "examples", "example-rules.json")}}
	cfg.ClientKeys = map[string]string{"client-example": "secret-example"}
	cfg.Proxy.EvalExposures.FlushInterval = 20 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := NewApp(context.Background(), AppOptions{Config: cfg, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return a, "http://" + a.Addr().String()
}

func postJSON(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set(wire.HeaderAPIKey, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAppEvaluationExposuresReachTheStream checks that the proxy process answers check_gate from
// its offline rule set and that the exposure arrives in the event stream, in a batch the forwarder
// can send as it is, with the event shape of the spec (§10).
func TestAppEvaluationExposuresReachTheStream(t *testing.T) {
	a, base := startEvalApp(t)
	status, body := postJSON(t, base+"/v1/check_gate", "secret-example", `{"user":{"userID":"beta-user","email":"b@example.com","privateAttributes":{"ssn":"x"}},"gateName":"new_checkout"}`)
	if status != 200 || !strings.Contains(body, `"value":true`) {
		t.Fatalf("check_gate: %d %s", status, body)
	}
	// ip_based country conditions need the process's IP → country table.
	if status, body := postJSON(t, base+"/v1/get_config", "secret-example", `{"user":{"userID":"u1","ip":"1.1.1.1"},"configName":"checkout_settings","disableExposureLogging":true}`); status != 200 || !strings.Contains(body, `"currency":"USD"`) {
		t.Fatalf("get_config by IP country: %d %s", status, body)
	}
	if status, body := postJSON(t, base+"/v1/initialize", "client-example", `{"user":{"userID":"beta-user"},"hash":"none"}`); status != 200 || !strings.Contains(body, `"new_checkout"`) {
		t.Fatalf("initialize: %d %.300s", status, body)
	}

	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, a.cfg.NATS.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	var msg *jetstream.RawStreamMsg
	for msg == nil {
		msg, err = stream.GetMsg(ctx, 1)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			msg = nil
			select {
			case <-ctx.Done():
				t.Fatal("no exposure batch in the stream within 10s")
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	msg.Data = natstest.BatchBody(t, msg)
	if got := msg.Header.Get(wire.MsgSDKKey); got != "secret-example" {
		t.Errorf("batch key header %q", got)
	}
	if got := msg.Header.Get(wire.MsgSource); got != wire.SourceProxy {
		t.Errorf("batch source %q", got)
	}
	if got := msg.Header.Get(wire.MsgEndpoint); got != wire.EndpointLogEvent {
		t.Errorf("batch endpoint %q", got)
	}
	var batch struct {
		Events          []map[string]json.RawMessage `json:"events"`
		StatsigMetadata map[string]any               `json:"statsigMetadata"`
	}
	if err := json.Unmarshal(msg.Data, &batch); err != nil {
		t.Fatalf("batch is not JSON: %v: %s", err, msg.Data)
	}
	if len(batch.Events) != 1 {
		t.Fatalf("%d events, want the one gate exposure: %s", len(batch.Events), msg.Data)
	}
	ev := batch.Events[0]
	for _, k := range []string{"eventName", "value", "metadata", "user", "time", "secondaryExposures"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("event lacks %q: %s", k, msg.Data)
		}
	}
	var md map[string]string
	if err := json.Unmarshal(ev["metadata"], &md); err != nil {
		t.Fatalf("metadata values must all be strings: %v", err)
	}
	want := map[string]string{"gate": "new_checkout", "gateValue": "true", "ruleID": "new_checkout_beta", "reason": "Network:Recognized", "lcut": "1767225600000", "configVersion": "3"}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("metadata[%s] = %q, want %q (all: %v)", k, md[k], v, md)
		}
	}
	var user map[string]any
	_ = json.Unmarshal(ev["user"], &user)
	if user["userID"] != "beta-user" || user["email"] != "b@example.com" || user["privateAttributes"] != nil {
		t.Errorf("logged user %v", user)
	}
	if batch.StatsigMetadata["sdkType"] != "sigedge-proxy" {
		t.Errorf("statsigMetadata %v", batch.StatsigMetadata)
	}
}
