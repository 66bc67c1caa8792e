package queue

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// compress encodes data with one HTTP content coding, as the SDKs do.
func compress(t testing.TB, coding string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		fw, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		w = fw
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case "br":
		w = brotli.NewWriter(&buf)
	default:
		t.Fatalf("unknown coding %q", coding)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecompress(t *testing.T) {
	const limit = 64 << 10
	d, err := NewBodyDecoder(limit)
	if err != nil {
		t.Fatal(err)
	}
	plain := sampleBatch(20) // about 10 KB
	bomb := make([]byte, limit+1)
	tests := []struct {
		name     string
		encoding string
		body     []byte
		want     []byte
		wantErr  error
	}{
		{"identity", "", plain, plain, nil},
		{"identity named", "Identity", plain, plain, nil},
		{"gzip", "gzip", compress(t, "gzip", plain), plain, nil},
		{"x-gzip upper case", " X-GZIP ", compress(t, "gzip", plain), plain, nil},
		{"deflate zlib", "deflate", compress(t, "deflate", plain), plain, nil},
		{"deflate raw", "deflate", compress(t, "raw-deflate", plain), plain, nil},
		{"zstd", "zstd", compress(t, "zstd", plain), plain, nil},
		{"br", "br", compress(t, "br", plain), plain, nil},
		{"stacked gzip then br", "gzip, br", compress(t, "br", compress(t, "gzip", plain)), plain, nil},
		{"gzip sniffed without header (js-client gz=1)", "", compress(t, "gzip", plain), plain, nil},
		{"zstd sniffed without header", "", compress(t, "zstd", plain), plain, nil},
		{"exactly the limit", "gzip", compress(t, "gzip", bomb[:limit]), bomb[:limit], nil},
		{"gzip bomb", "gzip", compress(t, "gzip", bomb), nil, ErrTooLarge},
		{"deflate bomb", "deflate", compress(t, "deflate", bomb), nil, ErrTooLarge},
		{"zstd bomb", "zstd", compress(t, "zstd", bomb), nil, ErrTooLarge},
		{"br bomb", "br", compress(t, "br", bomb), nil, ErrTooLarge},
		{"compressed body over the limit", "", bomb, nil, ErrTooLarge},
		{"corrupt gzip", "gzip", []byte("\x1f\x8bnot really gzip"), nil, ErrBadEncoding},
		{"truncated gzip", "gzip", compress(t, "gzip", plain)[:100], nil, ErrBadEncoding},
		{"gzip header on plain JSON", "gzip", plain, nil, ErrBadEncoding},
		{"corrupt zstd", "zstd", []byte("\x28\xb5\x2f\xfdgarbage"), nil, ErrBadEncoding},
		{"corrupt br", "br", []byte("not brotli at all"), nil, ErrBadEncoding},
		{"corrupt deflate", "deflate", []byte{0xff, 0xff, 0xff}, nil, ErrBadEncoding},
		{"unknown coding", "compress", plain, nil, ErrUnsupportedEncoding},
		{"too many codings", "gzip,gzip,gzip,gzip", plain, nil, ErrUnsupportedEncoding},
	}
	var reused bytes.Buffer // DecompressInto must give the same answers with a recycled buffer
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.Decompress(tc.encoding, tc.body)
			got2, err2 := d.DecompressInto(&reused, tc.encoding, tc.body)
			if !bytes.Equal(got, got2) || (err == nil) != (err2 == nil) {
				t.Fatalf("DecompressInto differs from Decompress: %v / %v", err, err2)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}

// TestDecompressReusesReadersSafely decodes, from several goroutines at once, good bodies after
// bodies that failed part way (corrupt, or over the limit): a reused reader must start afresh.
func TestDecompressReusesReadersSafely(t *testing.T) {
	const limit = 64 << 10
	d, err := NewBodyDecoder(limit)
	if err != nil {
		t.Fatal(err)
	}
	bomb := make([]byte, limit+1)
	a, b := sampleBatch(3), sampleBatch(30)
	for _, coding := range []string{"gzip", "deflate", "raw-deflate", "zstd", "br"} {
		t.Run(coding, func(t *testing.T) {
			header := coding
			if coding == "raw-deflate" {
				header = "deflate"
			}
			good := [][]byte{a, b}
			encoded := [][]byte{compress(t, coding, a), compress(t, coding, b)}
			bad := [][]byte{compress(t, coding, bomb), compress(t, coding, b)[:40]}
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					var buf bytes.Buffer
					for round := range 20 {
						if _, err := d.DecompressInto(&buf, header, bad[(g+round)%2]); err == nil {
							t.Errorf("a bad %s body decoded", coding)
							return
						}
						k := (g + round) % 2
						got, err := d.DecompressInto(&buf, header, encoded[k])
						if err != nil || !bytes.Equal(got, good[k]) {
							t.Errorf("round %d: %s body %d: %v (%d bytes, want %d)", round, coding, k, err, len(got), len(good[k]))
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestDecodeStatsigEncoded(t *testing.T) {
	plain := []byte(`{"events":[{"eventName":"a"}]}`)
	enc := []byte(base64.StdEncoding.EncodeToString(plain))
	for i, j := 0, len(enc)-1; i < j; i, j = i+1, j-1 {
		enc[i], enc[j] = enc[j], enc[i]
	}
	got, err := DecodeStatsigEncoded(enc)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := DecodeStatsigEncoded([]byte("!!not base64")); !errors.Is(err, ErrBadEncoding) {
		t.Fatalf("bad input: err = %v", err)
	}
}

func BenchmarkDecompressGzip(b *testing.B) {
	d, _ := NewBodyDecoder(10 << 20)
	for _, n := range []int{100, 1000} {
		body := compress(b, "gzip", sampleBatch(n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decompress("gzip", body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
