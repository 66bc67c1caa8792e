package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigedge/sigedge/forwarder/forwardertest"
)

// TestBacklogDrain measures how fast a forwarder drains a backlog of SIGEDGE_BENCH_EVENTS (default
// 1,000,000) events to a local fake Statsig, and its peak RSS (VmHWM of the forwarder process).
// Opt-in, as it takes a while and a few hundred MB of disk:
//
//	SIGEDGE_BENCH=1 go test -run TestBacklogDrain -v -timeout 20m ./cmd/forwarder/
//
// SIGEDGE_BENCH_REPLAY_RATE sets forwarder.replay_rate (default 0: unlimited; the production default
// of 20 batches/s caps a drain at 20,000 events/s by design).
func TestBacklogDrain(t *testing.T) {
	forwardertest.SkipUnlessBench(t, "run the backlog benchmark")
	total := forwardertest.EnvInt(t, "SIGEDGE_BENCH_EVENTS", 1_000_000)
	replayRate := os.Getenv("SIGEDGE_BENCH_REPLAY_RATE")
	if replayRate == "" {
		replayRate = "0"
	}
	const perMessage = 100 // events per SDK batch (message)
	const keys = 4
	messages := total / perMessage

	natsURL, js := forwardertest.StartJetStream(t)
	fake := forwardertest.NewLightFake(t)

	// Build the backlog: realistic exposure events (~420 bytes each), one SDK batch per message.
	start := time.Now()
	ids := make([]string, perMessage)
	var bodyBytes int64
	pending := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for m := range messages {
		for i := range ids {
			ids[i] = fmt.Sprintf("b%d-%d", m, i)
		}
		msg := exposureBatch(benchKey(m%keys), ids).Msg()
		bodyBytes += int64(len(msg.Data))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
		if pending++; pending == 2000 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("publishing the backlog timed out")
			}
			pending = 0
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing the backlog timed out")
	}
	t.Logf("backlog: %d events in %d messages, %.0f MB, published in %s", messages*perMessage, messages,
		float64(bodyBytes)/1e6, time.Since(start).Round(time.Millisecond))

	cfgPath := writeConfig(t, natsURL, fake.URL(), fmt.Sprintf(`  flush_interval: 2s
  replay_rate: %s
  ack_wait: 2m`, replayRate))
	c := forwardertest.StartProcess(t, "forwarder", cfgPath)
	start = time.Now()
	var peak int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // VmHWM is the peak already; sampling only guards against the process ending first
		defer close(sampled)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if hwm := vmHWM(c.Cmd.Process.Pid); hwm > peak {
				peak = hwm
			}
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
		}
	}()
	fake.WaitEvents(t, messages*perMessage, 15*time.Minute)
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	if hwm := vmHWM(c.Cmd.Process.Pid); hwm > peak {
		peak = hwm
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	code := c.Wait(t, time.Minute)
	_, got := fake.Counts()
	cpu := c.Cmd.ProcessState.UserTime() + c.Cmd.ProcessState.SystemTime()
	t.Logf("drained %d events (%d accepted, duplicates %d) in %s: %.0f events/s, %.1f MB/s of events; forwarder peak RSS (VmHWM) %.1f MiB, CPU %s; replay_rate=%s, exit %d",
		messages*perMessage, got, got-messages*perMessage, elapsed.Round(time.Millisecond),
		float64(messages*perMessage)/elapsed.Seconds(), float64(bodyBytes)/1e6/elapsed.Seconds(),
		float64(peak)/(1<<20), cpu.Round(time.Millisecond), replayRate, code)
	if got != messages*perMessage {
		t.Errorf("%d events accepted, want %d", got, messages*perMessage)
	}
}

func benchKey(i int) string { return fmt.Sprintf("secret-bench%037d", i) }

// vmHWM reads a process's peak resident set size in bytes (0 when it cannot be read).
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
