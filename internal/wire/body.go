package wire

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// EncodingS2 is the MsgEncoding of a body compressed as one S2 block (github.com/klauspost/compress/s2).
const EncodingS2 = "s2"

// MaxDecodedBody bounds the decoded size of a message body. Publishers never store more than a
// server's max payload (at most 64 MiB in NATS) of JSON in one message, so anything larger is a
// damaged or hostile message, refused before memory is allocated for it.
const MaxDecodedBody = 64 << 20

// ErrBodyEncoding is wrapped by DecodeBody's errors: the body cannot be read (unknown encoding,
// damaged data). Such a message will never decode: consumers dead-letter it.
var ErrBodyEncoding = errors.New("event batch body cannot be decoded")

// AppendS2 appends body compressed as one S2 block to dst (which may be a recycled buffer) and
// returns the result; EncodingS2 in MsgEncoding marks such a body. It returns dst unchanged and
// false when compressing would not pay: the block is no smaller than the body, or the body is larger
// than MaxDecodedBody (consumers would refuse it).
func AppendS2(dst, body []byte) ([]byte, bool) {
	if len(body) > MaxDecodedBody {
		return dst, false
	}
	n := s2.MaxEncodedLen(len(body))
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	enc := s2.Encode(dst[start:start+n], body)
	if len(enc) >= len(body) {
		return dst[:start], false
	}
	return dst[:start+len(enc)], true
}

// DecodeBody returns the JSON of an event-batch message from its encoding header (the value of
// MsgEncoding) and data. Plain bodies are returned as they are, without a copy.
func DecodeBody(encoding string, data []byte) ([]byte, error) {
	switch encoding {
	case "":
		return data, nil
	case EncodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrBodyEncoding, err)
		}
		if n > MaxDecodedBody {
			return nil, fmt.Errorf("%w: s2: decodes to %d bytes, more than %d", ErrBodyEncoding, n, MaxDecodedBody)
		}
		out, err := s2.Decode(make([]byte, n), data)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrBodyEncoding, err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: unknown %s %q", ErrBodyEncoding, MsgEncoding, encoding)
	}
}
