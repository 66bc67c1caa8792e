// Package natstest starts real NATS JetStream clusters in-process for tests: several nats-server
// instances on 127.0.0.1 joined by routes, each with its own store directory, that a test can stop
// and restart one by one to prove what survives the loss of a node.
package natstest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterName is the NATS cluster name of every test cluster (for placement by cluster).
const ClusterName = "sigedge-test"

// NodeTag is the server tag of node i (0-based): "node:n1", "node:n2", …, for placement by tags.
func NodeTag(i int) string { return fmt.Sprintf("node:n%d", i+1) }

// Cluster is a JetStream cluster of nodes on loopback ports.
type Cluster struct {
	t     testing.TB
	opts  []*server.Options
	nodes []*server.Server
}

// StartCluster starts n JetStream servers forming one cluster and waits until JetStream has a meta
// leader. The servers are shut down at the end of the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	routes := make([]*url.URL, n)
	for i := range routes {
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])}
	}
	base := t.TempDir()
	c := &Cluster{t: t, opts: make([]*server.Options, n), nodes: make([]*server.Server, n)}
	for i := 0; i < n; i++ {
		c.opts[i] = &server.Options{
			ServerName:             fmt.Sprintf("n%d", i+1),
			Host:                   "127.0.0.1",
			Port:                   clientPorts[i],
			JetStream:              true,
			StoreDir:               filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			MaxPayload:             8 << 20,
			NoSigs:                 true,
			NoLog:                  true,
			DisableJetStreamBanner: true,
			Tags:                   []string{NodeTag(i)},
			Cluster: server.ClusterOpts{
				Name: ClusterName,
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: routes,
		}
	}
	for i := range c.opts {
		c.start(i)
	}
	t.Cleanup(c.Shutdown)
	c.WaitReady(30 * time.Second)
	return c
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	// Options are consumed by the server; start each incarnation from a copy.
	o := c.opts[i].Clone()
	s, err := server.NewServer(o)
	if err != nil {
		c.t.Fatalf("natstest: node %d: %v", i+1, err)
	}
	go s.Start()
	// A restarted node re-reads its JetStream files before it listens: slow on a loaded machine.
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("natstest: node %d not ready within 30s", i+1)
	}
	c.nodes[i] = s
}

// URLs returns the client URLs of every node (seeds for a client).
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.opts))
	for i, o := range c.opts {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return out
}

// Node returns node i (0-based), or nil while it is stopped.
func (c *Cluster) Node(i int) *server.Server { return c.nodes[i] }

// Stop shuts node i down and waits until it has stopped.
func (c *Cluster) Stop(i int) {
	if s := c.nodes[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.nodes[i] = nil
	}
}

// Restart starts node i again with its old store directory and ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.nodes[i] != nil {
		c.t.Fatalf("natstest: node %d is running", i+1)
	}
	c.start(i)
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
}

// StreamLeader returns the index of the node leading stream name, or -1.
func (c *Cluster) StreamLeader(account, name string) int {
	for i, s := range c.nodes {
		if s != nil && s.JetStreamIsStreamLeader(account, name) {
			return i
		}
	}
	return -1
}

// ConsumerLeader returns the index of the node leading consumer name of stream, or -1.
func (c *Cluster) ConsumerLeader(account, stream, name string) int {
	for i, s := range c.nodes {
		if s != nil && s.JetStreamIsConsumerLeader(account, stream, name) {
			return i
		}
	}
	return -1
}

// WaitReady waits until a client can use JetStream on the cluster and the meta leader can place a
// stream on every node. A leader is elected before it has heard every peer's tags and storage: a
// placement then fails with "no suitable peers" (seen on a loaded machine). Every node must be
// running.
func (c *Cluster) WaitReady(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.placeOnEveryNode(); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("natstest: JetStream not ready within %s: %v", timeout, last)
}

// placeOnEveryNode creates and deletes a one-replica stream tagged for each node in turn.
func (c *Cluster) placeOnEveryNode() error {
	nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for i := range c.opts {
		name := fmt.Sprintf("NATSTEST_READY_%d", i+1)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{fmt.Sprintf("natstest.ready.%d", i+1)}, Storage: jetstream.MemoryStorage,
			Placement: &jetstream.Placement{Tags: []string{NodeTag(i)}},
		})
		if err != nil {
			return fmt.Errorf("placing a stream on node %d: %w", i+1, err)
		}
		if err := js.DeleteStream(ctx, name); err != nil {
			return fmt.Errorf("deleting the probe stream of node %d: %w", i+1, err)
		}
	}
	return nil
}

// freePorts reserves n distinct loopback ports. They are released before the servers bind them;
// on a test machine nothing else takes them in between.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	lns := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		lns[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
