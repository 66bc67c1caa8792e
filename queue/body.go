package queue

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// maxCodings bounds a Content-Encoding list ("gzip, br"): nobody stacks more, and each layer costs.
const maxCodings = 3

// BodyDecoder decompresses request bodies with every encoding an official SDK sends, never producing
// more than its limit: a zip bomb fails with ErrTooLarge after at most limit+1 bytes were inflated.
// It is safe for concurrent use.
type BodyDecoder struct {
	limit int64
	zstd  *zstd.Decoder
	// Readers are reused: each holds tables and windows of tens of kilobytes that would otherwise be
	// allocated (and zeroed) per request.
	gzip   sync.Pool // *gzip.Reader
	zlib   sync.Pool // zlib reader (io.ReadCloser and zlib.Resetter)
	flate  sync.Pool // raw deflate reader (io.ReadCloser and flate.Resetter)
	brotli sync.Pool // *brotli.Reader
}

// NewBodyDecoder returns a decoder whose output is at most limit bytes.
func NewBodyDecoder(limit int64) (*BodyDecoder, error) {
	if limit < 1 {
		return nil, fmt.Errorf("queue: body limit must be positive, got %d", limit)
	}
	// DecodeAll with a decoded-size cap: the frame header cannot make it allocate more than limit.
	// The window is capped too, since a window is never larger than the output it produces.
	window := uint64(max(limit, zstd.MinWindowSize))
	zd, err := zstd.NewReader(nil,
		zstd.WithDecoderMaxMemory(uint64(limit)),
		zstd.WithDecoderMaxWindow(min(window, 1<<29)),
		zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("queue: zstd decoder: %w", err)
	}
	return &BodyDecoder{limit: limit, zstd: zd}, nil
}

// Limit is the largest body the decoder produces.
func (d *BodyDecoder) Limit() int64 { return d.limit }

// Decompress decodes body as described by a Content-Encoding header value: "", identity, gzip,
// x-gzip, deflate (zlib-wrapped, or raw as some clients send it), zstd or br, or a comma-separated
// list of them applied in order. A body without an encoding that starts with the gzip or zstd magic
// number is decompressed too: @statsig/js-client gzips without a Content-Encoding header (it sets the
// query parameter gz=1 instead), and JSON never starts with those bytes.
func (d *BodyDecoder) Decompress(encoding string, body []byte) ([]byte, error) {
	return d.DecompressInto(nil, encoding, body)
}

// DecompressInto is Decompress writing the decoded body into dst (reset first) when it has to
// decode, so a caller can reuse buffers; nil means a new buffer. The result is body itself when
// there is nothing to decode, else it aliases dst.
func (d *BodyDecoder) DecompressInto(dst *bytes.Buffer, encoding string, body []byte) ([]byte, error) {
	if int64(len(body)) > d.limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(body), d.limit)
	}
	codings := strings.Split(encoding, ",")
	if len(codings) > maxCodings {
		return nil, fmt.Errorf("%w: %q stacks more than %d encodings", ErrUnsupportedEncoding, encoding, maxCodings)
	}
	// Content-Encoding lists codings in the order they were applied: undo them last first. Only the
	// last layer decoded writes into dst (inner layers of a stack are rare).
	for k := len(codings) - 1; k >= 0; k-- {
		out := dst
		if k > 0 {
			out = nil
		}
		c := strings.ToLower(strings.TrimSpace(codings[k]))
		if c == "" || c == "identity" {
			c = sniff(body)
		}
		var err error
		switch c {
		case "", "identity":
		case "gzip", "x-gzip":
			body, err = d.gunzip(out, body)
		case "deflate":
			body, err = d.inflate(out, body)
		case "zstd":
			body, err = d.unzstd(out, body)
		case "br":
			body, err = d.unbrotli(out, body)
		default:
			return nil, fmt.Errorf("%w: %q (send gzip, deflate, zstd, br or none)", ErrUnsupportedEncoding, c)
		}
		if err != nil {
			return nil, err
		}
	}
	return body, nil
}

// sniff recognises compressed bodies sent without a Content-Encoding.
func sniff(body []byte) string {
	switch {
	case len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b:
		return "gzip"
	case len(body) >= 4 && body[0] == 0x28 && body[1] == 0xb5 && body[2] == 0x2f && body[3] == 0xfd:
		return "zstd"
	}
	return ""
}

func (d *BodyDecoder) gunzip(dst *bytes.Buffer, body []byte) ([]byte, error) {
	zr, _ := d.gzip.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(body))
	} else {
		err = zr.Reset(bytes.NewReader(body))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrBadEncoding, err)
	}
	out, err := d.readAll(dst, zr, "gzip", len(body))
	d.gzip.Put(zr)
	return out, err
}

// inflate reads HTTP "deflate", which RFC 9110 defines as zlib-wrapped; some clients send a raw
// deflate stream instead, so a body without a zlib header is read as raw deflate.
func (d *BodyDecoder) inflate(dst *bytes.Buffer, body []byte) ([]byte, error) {
	zr, _ := d.zlib.Get().(io.ReadCloser)
	var err error
	if zr == nil {
		zr, err = zlib.NewReader(bytes.NewReader(body))
	} else {
		err = zr.(zlib.Resetter).Reset(bytes.NewReader(body), nil)
	}
	if err == nil {
		out, err := d.readAll(dst, zr, "deflate", len(body))
		d.zlib.Put(zr)
		return out, err
	}
	if zr != nil {
		d.zlib.Put(zr) // a failed Reset leaves it ready for the next one
	}
	fr, _ := d.flate.Get().(io.ReadCloser)
	if fr == nil {
		fr = flate.NewReader(bytes.NewReader(body))
	} else if err := fr.(flate.Resetter).Reset(bytes.NewReader(body), nil); err != nil {
		return nil, fmt.Errorf("%w: deflate: %v", ErrBadEncoding, err)
	}
	out, err := d.readAll(dst, fr, "deflate", len(body))
	d.flate.Put(fr)
	return out, err
}

func (d *BodyDecoder) unbrotli(dst *bytes.Buffer, body []byte) ([]byte, error) {
	br, _ := d.brotli.Get().(*brotli.Reader)
	if br == nil {
		br = brotli.NewReader(bytes.NewReader(body))
	} else if err := br.Reset(bytes.NewReader(body)); err != nil {
		return nil, fmt.Errorf("%w: br: %v", ErrBadEncoding, err)
	}
	out, err := d.readAll(dst, br, "br", len(body))
	d.brotli.Put(br)
	return out, err
}

func (d *BodyDecoder) unzstd(dst *bytes.Buffer, body []byte) ([]byte, error) {
	var into []byte
	if dst != nil {
		dst.Reset()
		into = dst.AvailableBuffer()
	}
	out, err := d.zstd.DecodeAll(body, into)
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, fmt.Errorf("%w: zstd body inflates beyond %d bytes", ErrTooLarge, d.limit)
	case err != nil:
		return nil, fmt.Errorf("%w: zstd: %v", ErrBadEncoding, err)
	case int64(len(out)) > d.limit:
		return nil, fmt.Errorf("%w: zstd body inflates beyond %d bytes", ErrTooLarge, d.limit)
	}
	return out, nil
}

// readAll reads r to the end, failing with ErrTooLarge as soon as it yields more than the limit.
// sizeHint is the compressed size: JSON typically inflates 5-10 times.
func (d *BodyDecoder) readAll(buf *bytes.Buffer, r io.Reader, name string, sizeHint int) ([]byte, error) {
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	buf.Grow(int(min(int64(sizeHint)*8+512, d.limit+1)))
	n, err := buf.ReadFrom(io.LimitReader(r, d.limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadEncoding, name, err)
	}
	if n > d.limit {
		return nil, fmt.Errorf("%w: %s body inflates beyond %d bytes", ErrTooLarge, name, d.limit)
	}
	return buf.Bytes(), nil
}

// DecodeStatsigEncoded undoes @statsig/js-client's optional body encoding (query parameter se=1):
// base64 of the JSON text, reversed.
func DecodeStatsigEncoded(body []byte) ([]byte, error) {
	rev := make([]byte, len(body))
	for i, c := range body {
		rev[len(body)-1-i] = c
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(rev)))
	n, err := base64.StdEncoding.Decode(out, bytes.TrimSpace(rev))
	if err != nil {
		return nil, fmt.Errorf("%w: statsig encoding (se=1): %v", ErrBadEncoding, err)
	}
	return out[:n], nil
}
