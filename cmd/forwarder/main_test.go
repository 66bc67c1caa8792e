package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

const (
	serverKeyA = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	serverKeyB = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// ---- helpers ----

func idRange(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// exposureBatch is a go-sdk log_event batch of realistic gate exposures (~420 bytes each) whose
// events carry the given ids in metadata.id.
func exposureBatch(key string, ids []string) forwardertest.Batch {
	var body bytes.Buffer
	body.Grow(len(ids) * 450)
	body.WriteString(`{"events":[`)
	for i, id := range ids {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d","email":"user%d@example.com","customIDs":{"companyID":"c%d"}},"value":"","metadata":{"gate":"a_gate","gateValue":"true","ruleID":"2RamGujUou6h2bVNQWhtNZ","configSyncTime":"1631638014811","initTime":"1631638014811","reason":"Network","serverTime":"1795570870952","id":%q},"secondaryExposures":[],"time":1795570870952,"statsigMetadata":null}`, i, i, i%50, id)
	}
	body.WriteString(`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"0f1e2d3c"}}`)
	return forwardertest.Batch{Key: key, SDKType: "go-sdk", SDKVersion: "1.35.1", Count: len(ids), Body: body.Bytes()}
}

// writeConfig writes a forwarder configuration for a test and returns its path.
func writeConfig(t testing.TB, natsURL, upstream, forwarderYAML string) string {
	t.Helper()
	yaml := fmt.Sprintf(`log:
  level: debug
forwarder:
  admin_listen: 127.0.0.1:0
%s
upstream:
  events: %s
nats:
  embedded: false
  urls: [%s]
  reconnect_wait: 50ms
rulesets:
  share:
    enabled: false
`, forwarderYAML, upstream, natsURL)
	return forwardertest.WriteConfig(t, yaml)
}

func TestMain(m *testing.M) {
	code := m.Run()
	forwardertest.RemoveBinary()
	os.Exit(code)
}

// ---- tests ----

// TestKilledMidBatch: a forwarder is killed with SIGKILL while Statsig holds its request, after
// Statsig took the events (the worst case: accepted, never acked). A restarted forwarder sends
// everything: no event is lost, and the only duplicates are events of the batch in flight.
func TestKilledMidBatch(t *testing.T) {
	natsURL, js := forwardertest.StartJetStream(t)
	fake := forwardertest.NewFake(t)
	held := make(chan []string, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	fake.SetRespond(func(r *forwardertest.Request, n int) int {
		if n == 1 {
			held <- r.IDs
			<-release // hold the request until the forwarder is dead
		}
		return 202
	})
	cfgPath := writeConfig(t, natsURL, fake.URL(), `  flush_interval: 200ms
  batch_max_events: 20
  concurrency: 1
  ack_wait: 2s
  request_timeout: 1500ms
  retry_backoff_min: 20ms
  retry_backoff_max: 200ms
  replay_rate: 0
  shutdown_timeout: 5s`)

	var want []string
	for i := range 30 {
		ids := idRange(fmt.Sprintf("kill%d", i), 5)
		want = append(want, ids...)
		forwardertest.Publish(t, js, exposureBatch([]string{serverKeyA, serverKeyB}[i%2], ids))
	}

	first := forwardertest.StartProcess(t, "first forwarder", cfgPath)
	var inFlight []string
	select {
	case inFlight = <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the forwarder sent nothing")
	}
	if code := first.Kill(t); code != -1 {
		t.Errorf("killed forwarder exit code %d, want -1 (killed by a signal)", code)
	}
	releaseOnce.Do(func() { close(release) }) // Statsig took the held batch; its ack never came

	second := forwardertest.StartProcess(t, "second forwarder", cfgPath)
	fake.WaitIDs(t, want, 30*time.Second)

	counts, _ := fake.Counts()
	inFlightSet := map[string]bool{}
	for _, id := range inFlight {
		inFlightSet[id] = true
	}
	dups := 0
	for _, id := range want {
		switch n := counts[id]; {
		case n == 1:
		case n == 2 && inFlightSet[id]:
			dups++
		default:
			t.Errorf("event %s arrived %d times (in the batch in flight: %v)", id, n, inFlightSet[id])
		}
	}
	t.Logf("%d events, 0 lost; %d duplicates, all from the batch in flight at the kill (%d events)", len(want), dups, len(inFlight))

	second.Signal(t, syscall.SIGTERM)
	if code := second.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("forwarder exit code %d after SIGTERM, want 0", code)
	}
	info := forwardertest.ConsumerInfo(t, js, config.Default().Forwarder.ConsumerName)
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after a graceful stop: %d messages pending ack, %d pending", info.NumAckPending, info.NumPending)
	}
}

// TestReplayDLQCommand runs forwarder replay-dlq with its flags against seeded dead letters.
func TestReplayDLQCommand(t *testing.T) {
	natsURL, js := forwardertest.StartJetStream(t)
	cfgPath := writeConfig(t, natsURL, "http://127.0.0.1:1", "")
	stream := config.Default().NATS.Stream
	deadPrefix := queue.DeadLetterSubjectPrefix(stream)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, key := range []string{serverKeyA, serverKeyA, serverKeyB} {
		msg := nats.NewMsg(deadPrefix + "." + wire.KeyHash(key))
		msg.Header.Set(wire.MsgSDKKey, key)
		msg.Header.Set(wire.MsgEndpoint, wire.EndpointLogEvent)
		msg.Header.Set(wire.MsgDeadStatus, "400")
		msg.Header.Set(wire.MsgDeadReason, "Statsig answered 400")
		msg.Header.Set(wire.MsgDeadAt, "1")
		msg.Data = []byte(fmt.Sprintf(`{"events":[{"eventName":"e","metadata":{"id":"dead%d"}}]}`, i))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	streamMsgs := func(name string) uint64 {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantDead   uint64
		wantEvents uint64
	}{
		{"one of key A", []string{"-config", cfgPath, "-key-hash", wire.KeyHash(serverKeyA), "-limit", "1"}, 0, "moved 1 dead-lettered batch(es)", 2, 1},
		{"the rest", []string{"-config", cfgPath}, 0, "moved 2 dead-lettered batch(es)", 0, 3},
		{"nothing left", []string{"-config", cfgPath}, 0, "moved 0 dead-lettered batch(es)", 0, 3},
		{"bad key hash", []string{"-config", cfgPath, "-key-hash", "a.b"}, 1, "moved 0", 0, 3},
		{"bad flag", []string{"-config", cfgPath, "-limit", "-3"}, 2, "", 0, 3},
		{"unknown argument", []string{"-config", cfgPath, "extra"}, 2, "", 0, 3},
		{"bad config", []string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, 1, "", 0, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := replayDLQ(ctx, tc.args, nil, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q stderr %q", code, tc.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("stdout %q does not say %q", stdout.String(), tc.wantOut)
			}
			if got := streamMsgs(stream.DeadLetterName); got != tc.wantDead {
				t.Errorf("%d dead letters left, want %d", got, tc.wantDead)
			}
			if got := streamMsgs(stream.Name); got != tc.wantEvents {
				t.Errorf("%d messages in the event stream, want %d", got, tc.wantEvents)
			}
		})
	}

	// What came back is the original batch: SDK headers kept, dead-letter headers gone.
	s, err := js.Stream(ctx, stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(wire.MsgSDKKey) != serverKeyA || raw.Header.Get(wire.MsgDeadStatus) != "" || raw.Subject != wire.EventSubject(stream.SubjectPrefix, serverKeyA) {
		t.Errorf("replayed message: subject %s headers %v", raw.Subject, raw.Header)
	}
}

// TestSubcommandHelp: the main command mentions the subcommand, and replay-dlq -help works.
func TestSubcommandHelp(t *testing.T) {
	if !strings.Contains(program().Summary, "replay-dlq") {
		t.Error("the main command's summary does not mention replay-dlq")
	}
	var stdout, stderr bytes.Buffer
	if code := replayDLQ(context.Background(), []string{"-help"}, nil, &stdout, &stderr); code != 0 {
		t.Errorf("replay-dlq -help exit code %d", code)
	}
	for _, flag := range []string{"-config", "-key-hash", "-limit"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("replay-dlq -help does not document %s:\n%s", flag, stderr.String())
		}
	}
}
