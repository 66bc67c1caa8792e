package wire

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

func TestS2BodyRoundTrip(t *testing.T) {
	var events []string
	for i := range 200 {
		events = append(events, fmt.Sprintf(`{"eventName":"statsig::gate_exposure","user":{"userID":"u%d"},"time":%d}`, i, 1767225600000+i))
	}
	body := []byte(`{"events":[` + strings.Join(events, ",") + `]}`)
	prefix := []byte("kept") // a recycled buffer's old contents before the append point stay
	enc, ok := AppendS2(prefix, body)
	if !ok {
		t.Fatal("a repetitive body was not compressed")
	}
	if !bytes.HasPrefix(enc, prefix) || len(enc)-len(prefix) >= len(body)/3 {
		t.Fatalf("compressed %d bytes to %d (with the 4-byte prefix): expected at least 3x", len(body), len(enc))
	}
	got, err := DecodeBody(EncodingS2, enc[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("decoded body differs from the original")
	}
}

func TestAppendS2LeavesIncompressibleBodies(t *testing.T) {
	body := make([]byte, 64)
	for i := range body {
		body[i] = byte(i*151 + 7) // no repeats an S2 block could use
	}
	dst := []byte("x")
	out, ok := AppendS2(dst, body)
	if ok || !bytes.Equal(out, dst) {
		t.Fatalf("incompressible body: got ok=%v, %d bytes; want the buffer unchanged", ok, len(out))
	}
}

func TestDecodeBody(t *testing.T) {
	plain := []byte(`{"events":[]}`)
	huge := s2.Encode(nil, make([]byte, MaxDecodedBody+1))
	tests := []struct {
		name     string
		encoding string
		data     []byte
		want     []byte
		wantErr  string
	}{
		{name: "plain body is returned as is", data: plain, want: plain},
		{name: "unknown encoding", encoding: "gzip", data: plain, wantErr: `unknown Sigedge-Encoding "gzip"`},
		{name: "damaged s2", encoding: EncodingS2, data: []byte{0xff, 0xff, 0xff}, wantErr: "s2:"},
		{name: "s2 of more than the bound", encoding: EncodingS2, data: huge, wantErr: "more than"},
		{name: "truncated s2", encoding: EncodingS2, data: s2.Encode(nil, bytes.Repeat(plain, 50))[:20], wantErr: "s2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeBody(tt.encoding, tt.data)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrBodyEncoding) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrBodyEncoding with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if len(tt.want) > 0 && &got[0] != &tt.data[0] {
				t.Error("a plain body was copied")
			}
		})
	}
}
