package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natsutil"
	"github.com/sigedge/sigedge/internal/wire"
	"github.com/sigedge/sigedge/queue"
)

const (
	serverKeyA = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	serverKeyB = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// ---- helpers ----

// startNATS starts an embedded JetStream server on 127.0.0.1 and returns its URL and a client.
func startNATS(t testing.TB) (string, jetstream.JetStream) {
	t.Helper()
	cfg := config.Default().NATS
	cfg.DataDir = t.TempDir()
	cfg.Port = 0
	srv, err := natsutil.StartEmbedded(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsutil.Shutdown(srv) })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, cfg.Stream); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

// publish stores one SDK batch whose events carry the given ids in metadata.id.
func publish(t testing.TB, js jetstream.JetStream, key string, ids []string, pad int) {
	t.Helper()
	var body bytes.Buffer
	body.WriteString(`{"events":[`)
	padding := strings.Repeat("p", pad)
	for i, id := range ids {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"eventName":"statsig::gate_exposure","user":{"userID":"u%d","email":"user@example.com","customIDs":{"companyID":"c1"}},"value":"","metadata":{"gate":"a_gate","gateValue":"true","ruleID":"2RamGujUou6h2bVNQWhtNZ","reason":"Network","id":%q,"pad":%q},"secondaryExposures":[],"time":1795570870952,"statsigMetadata":null}`, i, id, padding)
	}
	body.WriteString(`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"3f1c"}}`)
	msg := nats.NewMsg(wire.EventSubject(config.Default().NATS.Stream.SubjectPrefix, key))
	msg.Header.Set(wire.MsgSDKKey, key)
	msg.Header.Set(wire.MsgEndpoint, wire.EndpointLogEvent)
	msg.Header.Set(wire.MsgSource, wire.SourceSDK)
	msg.Header.Set(wire.MsgSDKType, "go-sdk")
	msg.Header.Set(wire.MsgSDKVersion, "1.35.1")
	msg.Header.Set(wire.MsgEventCount, strconv.Itoa(len(ids)))
	msg.Header.Set(wire.MsgReceivedAt, strconv.FormatInt(time.Now().UnixMilli(), 10))
	msg.Data = body.Bytes()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

func idRange(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
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
	path := filepath.Join(t.TempDir(), "sigedge.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, nil); err != nil {
		t.Fatalf("test config: %v\n%s", err, yaml)
	}
	return path
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// forwarderBinary builds cmd/forwarder once per test run.
func forwarderBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sigedge-forwarder-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "forwarder")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// child is a forwarder process.
type child struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// startChild runs the forwarder binary with a config file; it is killed at the end of the test if
// still running, and its output is logged when the test failed.
func startChild(t *testing.T, name, configPath string) *child {
	t.Helper()
	c := &child{out: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(forwarderBinary(t), "-config", configPath)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) { // the test's config file is the whole truth
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, c.out.String())
		}
	})
	return c
}

// wait waits for the process to exit and returns its exit code.
func (c *child) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("forwarder did not exit within %s", timeout)
	}
	return c.cmd.ProcessState.ExitCode()
}

// ---- tests ----

// TestKilledMidBatch: a forwarder is killed with SIGKILL while Statsig holds its request, after
// Statsig took the events (the worst case: accepted, never acked). A restarted forwarder sends
// everything: no event is lost, and the only duplicates are events of the batch in flight.
func TestKilledMidBatch(t *testing.T) {
	natsURL, js := startNATS(t)
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
		publish(t, js, []string{serverKeyA, serverKeyB}[i%2], ids, 0)
	}

	first := startChild(t, "first forwarder", cfgPath)
	var inFlight []string
	select {
	case inFlight = <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the forwarder sent nothing")
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t, 10*time.Second); code != -1 {
		t.Errorf("killed forwarder exit code %d, want -1 (killed by a signal)", code)
	}
	releaseOnce.Do(func() { close(release) }) // Statsig took the held batch; its ack never came

	second := startChild(t, "second forwarder", cfgPath)
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

	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := second.wait(t, 15*time.Second); code != 0 {
		t.Errorf("forwarder exit code %d after SIGTERM, want 0", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, config.Default().NATS.Stream.Name, config.Default().Forwarder.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after a graceful stop: %d messages pending ack, %d pending", info.NumAckPending, info.NumPending)
	}
}

// TestReplayDLQCommand runs forwarder replay-dlq with its flags against seeded dead letters.
func TestReplayDLQCommand(t *testing.T) {
	natsURL, js := startNATS(t)
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
