package natsutil

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sigedge/sigedge/internal/config"
)

// startServer starts a nats-server with opts (loopback, random port, JetStream) and returns its port.
func startServer(t *testing.T, opts *server.Options) int {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.NoLog, opts.NoSigs, opts.DisableJetStreamBanner = true, true, true
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.Addr().(*net.TCPAddr).Port
}

// externalConfig parses the nats section of a configuration file as an operator would write it, so
// that the YAML names of the credential and TLS fields are exercised too.
func externalConfig(t *testing.T, natsYAML string) config.NATS {
	t.Helper()
	cfg, err := config.Parse([]byte("nats:\n  embedded: false\n  connect_timeout: 2s\n" + natsYAML))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, natsYAML)
	}
	return cfg.NATS
}

// useJetStream proves the connection is fit for the binaries: it creates a stream and gets a
// publish acknowledged.
func useJetStream(t *testing.T, cfg config.NATS) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := Connect(ctx, cfg, ConnectOptions{Name: "auth-test"})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "AUTH", Subjects: []string{"auth.>"}}); err != nil {
		t.Fatalf("connected, but JetStream refused a stream: %v", err)
	}
	if _, err := js.Publish(ctx, "auth.one", []byte("x")); err != nil {
		t.Fatalf("connected, but the publish was not acknowledged: %v", err)
	}
	return nil
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testPKI is a CA and the server and client certificates it signed, as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	otherCA                                              string // a CA that signed nothing here
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key := newKey()
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	leaf := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key := newKey()
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	ca, caKey, caPEM := newCA("sigedge test CA")
	_, _, otherPEM := newCA("some other CA")
	sc, sk := leaf(ca, caKey, "nats-0", x509.ExtKeyUsageServerAuth)
	cc, ck := leaf(ca, caKey, "sigedge", x509.ExtKeyUsageClientAuth)
	return testPKI{
		caFile:     writeFile(t, dir, "ca.pem", caPEM),
		otherCA:    writeFile(t, dir, "other-ca.pem", otherPEM),
		serverCert: writeFile(t, dir, "server.pem", sc),
		serverKey:  writeFile(t, dir, "server-key.pem", sk),
		clientCert: writeFile(t, dir, "client.pem", cc),
		clientKey:  writeFile(t, dir, "client-key.pem", ck),
	}
}

// TestConnectWithMutualTLS: a server that requires TLS and verifies client certificates accepts
// the binaries' connection when nats.tls names the CA and a client certificate, whether the URL
// says nats:// or tls://, and refuses it, with an error naming the server, otherwise.
func TestConnectWithMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.caFile, Verify: true, Timeout: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	port := startServer(t, &server.Options{JetStream: true, TLS: true, TLSVerify: true, TLSConfig: tlsCfg, TLSTimeout: 2})

	tests := []struct {
		name, scheme, tls string
		ok                bool
	}{
		{"CA and client certificate", "nats", fmt.Sprintf("ca_file: %s\n    cert_file: %s\n    key_file: %s", pki.caFile, pki.clientCert, pki.clientKey), true},
		{"tls URL", "tls", fmt.Sprintf("ca_file: %s\n    cert_file: %s\n    key_file: %s", pki.caFile, pki.clientCert, pki.clientKey), true},
		{"no client certificate", "tls", fmt.Sprintf("ca_file: %s", pki.caFile), false},
		{"server signed by an unknown CA", "tls", fmt.Sprintf("ca_file: %s\n    cert_file: %s\n    key_file: %s", pki.otherCA, pki.clientCert, pki.clientKey), false},
		{"no TLS at all", "nats", "ca_file: \"\"", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := fmt.Sprintf("%s://127.0.0.1:%d", tc.scheme, port)
			cfg := externalConfig(t, fmt.Sprintf("  urls: [%s]\n  tls:\n    %s\n", url, tc.tls))
			err := useJetStream(t, cfg)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), fmt.Sprint(port)) {
					t.Errorf("error does not name the server: %v", err)
				}
			}
		})
	}
}

// TestConnectWithNKey: a server that knows the binaries' NKey accepts a connection made with
// nats.nkey_file (the seed) and refuses another key or none.
func TestConnectWithNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()
	dir := t.TempDir()
	seedFile := writeFile(t, dir, "sigedge.nk", seed)
	strangerFile := writeFile(t, dir, "stranger.nk", strangerSeed)
	port := startServer(t, &server.Options{JetStream: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	tests := []struct {
		name, nkeyFile string
		ok             bool
	}{
		{"known key", seedFile, true},
		{"unknown key", strangerFile, false},
		{"no key", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := useJetStream(t, externalConfig(t, fmt.Sprintf("  urls: [%s]\n  nkey_file: %q\n", url, tc.nkeyFile)))
			if tc.ok != (err == nil) {
				t.Fatalf("ok %v, err %v", tc.ok, err)
			}
			if err != nil && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("error does not say why: %v", err)
			}
		})
	}
	if _, err := Connect(context.Background(), externalConfig(t, fmt.Sprintf("  urls: [%s]\n  nkey_file: %q\n", url, writeFile(t, dir, "garbage.nk", []byte("not a seed")))), ConnectOptions{}); err == nil || !strings.Contains(err.Error(), "nkey_file") {
		t.Errorf("a file that is not a seed: %v, want an error naming nats.nkey_file", err)
	}
}

// TestConnectWithCredentials: a server in operator (JWT) mode accepts a connection made with a
// .creds file of a user of an account it trusts (JetStream enabled for the account), and refuses
// the user of an account signed by another operator.
func TestConnectWithCredentials(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// account is an account signed by op, with JetStream when js is set.
	account := func(op nkeys.KeyPair, js bool) (nkeys.KeyPair, string, string) {
		acc, err := nkeys.CreateAccount()
		must(err)
		pub, _ := acc.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := ac.Encode(op)
		must(err)
		return acc, pub, token
	}
	// creds issues an operator, an account with JetStream, a system account and a user, and returns
	// the operator's claims, the accounts for the server's resolver, and the user's .creds file.
	creds := func() (op *jwt.OperatorClaims, accounts map[string]string, sys string, file []byte) {
		okp, err := nkeys.CreateOperator()
		must(err)
		opPub, _ := okp.PublicKey()
		opJWT, err := jwt.NewOperatorClaims(opPub).Encode(okp)
		must(err)
		op, err = jwt.DecodeOperatorClaims(opJWT)
		must(err)
		acc, accPub, accJWT := account(okp, true)
		_, sysPub, sysJWT := account(okp, false)
		user, err := nkeys.CreateUser()
		must(err)
		userPub, _ := user.PublicKey()
		userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
		must(err)
		seed, _ := user.Seed()
		file, err = jwt.FormatUserConfig(userJWT, seed)
		must(err)
		return op, map[string]string{accPub: accJWT, sysPub: sysJWT}, sysPub, file
	}
	op, accounts, sys, good := creds()
	_, _, _, foreign := creds()
	resolver := &server.MemAccResolver{}
	for pub, token := range accounts {
		must(resolver.Store(pub, token))
	}
	port := startServer(t, &server.Options{JetStream: true, TrustedOperators: []*jwt.OperatorClaims{op}, AccountResolver: resolver, SystemAccount: sys})
	dir := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	tests := []struct {
		name  string
		creds []byte
		ok    bool
	}{
		{"trusted user", good, true},
		{"user of another operator", foreign, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, dir, fmt.Sprintf("user%d.creds", i), tc.creds)
			err := useJetStream(t, externalConfig(t, fmt.Sprintf("  urls: [%s]\n  credentials_file: %q\n", url, file)))
			if tc.ok != (err == nil) {
				t.Fatalf("ok %v, err %v", tc.ok, err)
			}
		})
	}
}
