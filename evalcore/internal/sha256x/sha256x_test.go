package sha256x

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
)

func want(prefix, s string) uint64 {
	sum := sha256.Sum256([]byte(prefix + "." + s))
	return binary.BigEndian.Uint64(sum[:8])
}

// TestAgainstStdlib covers every prefix and unit length around the block
// boundaries and past the stack buffer, and the spec's golden vector.
func TestAgainstStdlib(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 400; i++ {
		sb.WriteByte(byte('a' + i*7%26))
	}
	src := sb.String()
	for pl := 0; pl <= 200; pl++ {
		p := New(src[:pl])
		for ul := 0; ul <= 300; ul += 1 + ul/40 {
			u := src[400-ul:]
			if got, w := p.Sum64(u), want(src[:pl], u); got != w {
				t.Fatalf("prefix %d unit %d: %x, want %x", pl, ul, got, w)
			}
			if got, w := Sum64(src[:pl], u), want(src[:pl], u); got != w {
				t.Fatalf("Sum64 prefix %d unit %d: %x, want %x", pl, ul, got, w)
			}
		}
	}
	// Spec §2 vector: salt.ruleSalt.unit.
	p := New("46fccb20-ae05-4dc0-a3d9-eebd4c6c7475.6a2fd20e-2ff6-4b97-bc6c-64b4c765d9d6")
	if got := p.Sum64("a_user"); got != 16522545949604324922 {
		t.Fatalf("golden vector: %d", got)
	}
	var zero Prefix
	if got := zero.Sum64("x"); got != want("", "x") {
		t.Fatal("zero Prefix")
	}
}

func FuzzSum64(f *testing.F) {
	f.Add("7433204e-76a3-498f-8540-96fd2e9224b5", "random_user_99")
	f.Add(strings.Repeat("x", 63), "")
	f.Fuzz(func(t *testing.T, prefix, s string) {
		p := New(prefix)
		if got, w := p.Sum64(s), want(prefix, s); got != w {
			t.Fatalf("%q %q: %x, want %x", prefix, s, got, w)
		}
	})
}

var sink uint64

func BenchmarkSum64(b *testing.B) {
	for _, c := range []struct{ name, prefix, unit string }{
		{"salt", "7433204e-76a3-498f-8540-96fd2e9224b5", "random_user_99"},
		{"specRule", "46fccb20-ae05-4dc0-a3d9-eebd4c6c7475.3QoA4ncNdVGBaMt3N1KYjz:0.50:1", "random_user_99"},
	} {
		p := New(c.prefix)
		b.Run(c.name+"/prefix", func(b *testing.B) {
			for b.Loop() {
				sink += p.Sum64(c.unit)
			}
		})
		b.Run(c.name+"/stdlib", func(b *testing.B) {
			for b.Loop() {
				sink += Sum64(c.prefix, c.unit)
			}
		})
	}
}
