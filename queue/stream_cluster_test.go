package queue

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/natstest"
)

// TestStreamsOnACluster: on a 3-node cluster the streams get the configured replicas and placement;
// a placement no server satisfies fails start-up with the stream's name; an existing stream with
// other settings is reported, and left alone.
func TestStreamsOnACluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(strings.Join(c.URLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// peers returns the servers holding a stream's replicas, leader first, once it has a leader.
	peers := func(name string) []string {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Cluster != nil && info.Cluster.Leader != "" {
				out := []string{info.Cluster.Leader}
				for _, p := range info.Cluster.Replicas {
					out = append(out, p.Name)
				}
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %s has no leader after 10s", name)
			}
			time.Sleep(50 * time.Millisecond) // elections have no event to wait on from a client
		}
	}
	stream := func(prefix string, replicas int, p config.Placement) config.Stream {
		s := config.Default().NATS.Stream
		s.Name, s.DeadLetterName, s.SubjectPrefix = prefix+"_EVENTS", prefix+"_DEAD", strings.ToLower(prefix)+".events"
		s.Replicas, s.Placement = replicas, p
		return s
	}

	tests := []struct {
		name    string
		cfg     config.Stream
		want    []string // the servers holding replicas (any order); nil: every node
		wantErr string
	}{
		{"three replicas", stream("R3", 3, config.Placement{}), nil, ""},
		{"three replicas in the named cluster", stream("CL", 3, config.Placement{Cluster: natstest.ClusterName}), nil, ""},
		{"one replica on the tagged node", stream("TAG", 1, config.Placement{Tags: []string{natstest.NodeTag(1)}}), []string{"n2"}, ""},
		{"no server has the tag", stream("NOWHERE", 1, config.Placement{Tags: []string{"node:n9"}}), nil, "create stream NOWHERE_EVENTS"},
		{"no such cluster", stream("OTHER", 3, config.Placement{Cluster: "elsewhere"}), nil, "create stream OTHER_EVENTS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := EnsureStreams(ctx, js, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				t.Logf("start-up error: %v", err)
				return
			}
			if err != nil || len(ms) != 0 {
				t.Fatalf("EnsureStreams: %v %v", ms, err)
			}
			want := tc.want
			if want == nil {
				want = []string{"n1", "n2", "n3"}
			}
			for _, name := range []string{tc.cfg.Name, tc.cfg.DeadLetterName} {
				got := peers(name)
				if strings.Join(slices.Sorted(slices.Values(got)), ",") != strings.Join(want, ",") {
					t.Errorf("stream %s is on %v, want %v", name, got, want)
				}
			}
			// Ensuring again changes nothing and reports nothing.
			if ms, err := EnsureStreams(ctx, js, tc.cfg); err != nil || len(ms) != 0 {
				t.Errorf("second EnsureStreams: %v %v", ms, err)
			}
		})
	}

	t.Run("an existing stream with other settings is reported and kept", func(t *testing.T) {
		cfg := stream("DRIFT", 3, config.Placement{Cluster: natstest.ClusterName})
		hand := StreamConfig(cfg)
		hand.Replicas, hand.MaxBytes, hand.Placement = 1, 1<<20, nil
		if _, err := js.CreateStream(ctx, hand); err != nil {
			t.Fatal(err)
		}
		ms, err := EnsureStreams(ctx, js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]bool{}
		for _, m := range ms {
			if m.Stream != cfg.Name {
				t.Errorf("mismatch reported for %s: %s", m.Stream, m)
			}
			settings[m.Setting] = true
		}
		if len(ms) != 3 || !settings["replicas"] || !settings["max_bytes"] || !settings["placement"] {
			t.Fatalf("mismatches %v, want replicas, max_bytes and placement of %s", ms, cfg.Name)
		}
		if got := peers(cfg.Name); len(got) != 1 {
			t.Errorf("the stream was changed: now on %v", got)
		}
		reg := prometheus.NewRegistry()
		ReportMismatches(reg, nil, cfg, ms)
		got := gaugeValues(t, reg, "sigedge_stream_setting_mismatches", "stream")
		if got[cfg.Name] != 3 || got[cfg.DeadLetterName] != 0 || len(got) != 2 {
			t.Errorf("sigedge_stream_setting_mismatches = %v, want 3 for %s and 0 for %s", got, cfg.Name, cfg.DeadLetterName)
		}
	})
}

// gaugeValues reads a gauge vector from reg by the value of one label.
func gaugeValues(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}
