package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
)

// Errors of DecodeBatch and BodyDecoder.Decompress, one per kind of bad input. A returned error wraps
// exactly one of them (test with errors.Is); its message says what and where.
var (
	// ErrTooLarge: the body, compressed or decompressed, is larger than the limit.
	ErrTooLarge = errors.New("body too large")
	// ErrUnsupportedEncoding: a Content-Encoding other than gzip, deflate, zstd, br or identity.
	ErrUnsupportedEncoding = errors.New("unsupported content encoding")
	// ErrBadEncoding: the body is not valid data of its encoding (corrupt or truncated).
	ErrBadEncoding = errors.New("body does not decompress")
	// ErrInvalidJSON: the (decompressed) body is not JSON.
	ErrInvalidJSON = errors.New("body is not valid JSON")
	// ErrInvalidBatch: valid JSON, but not {"events":[…], …}.
	ErrInvalidBatch = errors.New("body is not an event batch")
)

// DropReason says why one event of an otherwise good batch was left out.
type DropReason int

// The reasons an event is dropped. Each has a stable name for metrics and responses.
const (
	// DropNotObject: the element of "events" is not a JSON object.
	DropNotObject DropReason = iota
	// DropMissingName: the event has no "eventName".
	DropMissingName
	// DropInvalidName: "eventName" is not a non-empty string.
	DropInvalidName
	// DropTooLarge: the event alone is larger than the largest message JetStream accepts.
	DropTooLarge
	// DropDuplicateExposure: an exposure already seen within the de-duplication window (only with
	// proxy.exposure_dedupe.enabled).
	DropDuplicateExposure
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"event_not_object", "missing_event_name", "invalid_event_name", "event_too_large", "duplicate_exposure",
}

// String is the reason's metric label.
func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// DropCounts counts dropped events by reason.
type DropCounts [numDropReasons]int

// Total is the number of dropped events.
func (d *DropCounts) Total() int {
	n := 0
	for _, c := range d {
		n += c
	}
	return n
}

// Map returns the non-zero counts by reason name (for a JSON response).
func (d *DropCounts) Map() map[string]int {
	out := map[string]int{}
	for r, c := range d {
		if c > 0 {
			out[DropReason(r).String()] = c
		}
	}
	return out
}

// Batch is a decoded event batch. Its byte slices point into the decoded body: they are the bytes
// the SDK sent, never re-marshalled, so event contents reach Statsig exactly as the SDK wrote them.
type Batch struct {
	// Body is the whole decoded body. It is published as it is when every event is kept and it fits
	// one message.
	Body []byte
	// Events holds the raw JSON of each valid event, in order.
	Events [][]byte
	// Total is the number of elements of "events", valid or not.
	Total int
	// Dropped counts the elements of "events" left out, by reason.
	Dropped DropCounts
	// EventsRaw is the raw "events" array, the basis of the batch's idempotency id.
	EventsRaw []byte
	// Metadata is the raw "statsigMetadata" value, or nil.
	Metadata []byte
	// Fields are the other top-level members, raw ("name": value), kept when a batch is rebuilt.
	Fields [][]byte
}

// SDKInfo returns statsigMetadata.sdkType and sdkVersion, for SDKs that do not send the headers.
func (b *Batch) SDKInfo() (sdkType, sdkVersion string) {
	if len(b.Metadata) == 0 || b.Metadata[0] != '{' {
		return "", ""
	}
	var m struct {
		SDKType    any `json:"sdkType"`
		SDKVersion any `json:"sdkVersion"`
	}
	if json.Unmarshal(b.Metadata, &m) != nil {
		return "", ""
	}
	s, _ := m.SDKType.(string)
	v, _ := m.SDKVersion.(string)
	return s, v
}

// maxDepth is encoding/json's nesting limit, so that everything DecodeBatch accepts the forwarder's
// encoding/json accepts too.
const maxDepth = 10000

// DecodeBatch validates a decompressed body and splits it into events. The whole body must be valid
// JSON (RFC 8259, as encoding/json.Valid sees it) and an object with an "events" array, or the batch
// is refused with ErrInvalidJSON or ErrInvalidBatch. Elements of "events" that are not objects with a
// non-empty string "eventName" are dropped and counted in Batch.Dropped; the others are kept
// byte-for-byte. As with encoding/json, the last of duplicate members wins.
func DecodeBatch(data []byte) (*Batch, error) {
	s := scanner{data: data}
	b := &Batch{Body: data}
	i := s.ws(0)
	if i == len(data) {
		return nil, fmt.Errorf("%w: empty body", ErrInvalidJSON)
	}
	if data[i] != '{' {
		end, err := s.value(i)
		if err != nil {
			return nil, err
		}
		if s.ws(end) != len(data) {
			return nil, s.fail(s.ws(end), "after the top-level value")
		}
		return nil, fmt.Errorf("%w: the body must be a JSON object {\"events\":[…]}", ErrInvalidBatch)
	}
	var haveEvents, eventsIsList bool
	s.depth = 1
	i = s.ws(i + 1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '"' {
				return nil, s.fail(i, "where an object key was expected")
			}
			keyStart := i
			keyEnd, esc, err := s.str(i)
			if err != nil {
				return nil, err
			}
			i = s.ws(keyEnd)
			if i >= len(data) || data[i] != ':' {
				return nil, s.fail(i, "where ':' was expected")
			}
			v := s.ws(i + 1)
			if v >= len(data) {
				return nil, s.fail(v, "where a value was expected")
			}
			key := data[keyStart:keyEnd]
			switch {
			case keyIs(key, esc, "events"):
				haveEvents = true
				b.Events, b.Total, b.Dropped = b.Events[:0], 0, DropCounts{}
				if data[v] == '[' {
					eventsIsList = true
					i, err = s.events(v, b)
				} else {
					eventsIsList = false
					i, err = s.value(v)
				}
				if err != nil {
					return nil, err
				}
				b.EventsRaw = data[v:i]
			case keyIs(key, esc, "statsigMetadata"):
				if i, err = s.value(v); err != nil {
					return nil, err
				}
				b.Metadata = data[v:i]
			default:
				if i, err = s.value(v); err != nil {
					return nil, err
				}
				b.Fields = append(b.Fields, data[keyStart:i])
			}
			i = s.ws(i)
			if i >= len(data) {
				return nil, s.fail(i, "in the top-level object")
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return nil, s.fail(i, "where ',' or '}' was expected")
			}
			i = s.ws(i + 1)
		}
	}
	if j := s.ws(i); j != len(data) {
		return nil, s.fail(j, "after the top-level object")
	}
	switch {
	case !haveEvents:
		return nil, fmt.Errorf("%w: no \"events\" member", ErrInvalidBatch)
	case !eventsIsList:
		return nil, fmt.Errorf("%w: \"events\" must be an array", ErrInvalidBatch)
	}
	return b, nil
}

// keyIs reports whether the raw key (with quotes) names name. A key with escapes is unescaped first
// (rare), so keys compare the way encoding/json sees them.
func keyIs(raw []byte, esc bool, name string) bool {
	if !esc {
		return len(raw) == len(name)+2 && string(raw[1:len(raw)-1]) == name
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == name
}

// scanner validates JSON in one pass over a byte slice without allocating.
type scanner struct {
	data  []byte
	depth int
}

func (s *scanner) fail(i int, where string) error {
	if i >= len(s.data) {
		return fmt.Errorf("%w: unexpected end of input %s", ErrInvalidJSON, where)
	}
	return fmt.Errorf("%w: unexpected %q at offset %d %s", ErrInvalidJSON, s.data[i], i, where)
}

// ws skips JSON whitespace.
func (s *scanner) ws(i int) int {
	for i < len(s.data) {
		switch s.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// events scans the "events" array starting at data[i] == '[' and classifies each element.
func (s *scanner) events(i int, b *Batch) (int, error) {
	data := s.data
	s.depth++
	if s.depth > maxDepth {
		return 0, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	i = s.ws(i + 1)
	if i < len(data) && data[i] == ']' {
		s.depth--
		return i + 1, nil
	}
	for {
		if i >= len(data) {
			return 0, s.fail(i, "in \"events\"")
		}
		start := i
		var (
			end    int
			err    error
			reason = DropNotObject
		)
		if data[i] == '{' {
			end, reason, err = s.event(i)
		} else {
			end, err = s.value(i)
		}
		if err != nil {
			return 0, err
		}
		b.Total++
		if reason < 0 {
			b.Events = append(b.Events, data[start:end])
		} else {
			b.Dropped[reason]++
		}
		i = s.ws(end)
		if i >= len(data) {
			return 0, s.fail(i, "in \"events\"")
		}
		if data[i] == ']' {
			s.depth--
			return i + 1, nil
		}
		if data[i] != ',' {
			return 0, s.fail(i, "where ',' or ']' was expected in \"events\"")
		}
		i = s.ws(i + 1)
	}
}

// event scans one event object at data[i] == '{'. reason is -1 for a valid event, else why it is
// dropped.
func (s *scanner) event(i int) (end int, reason DropReason, err error) {
	data := s.data
	s.depth++
	if s.depth > maxDepth {
		return 0, 0, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	reason = DropMissingName
	i = s.ws(i + 1)
	if i < len(data) && data[i] == '}' {
		s.depth--
		return i + 1, reason, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, 0, s.fail(i, "where an object key was expected")
		}
		keyStart := i
		keyEnd, esc, err := s.str(i)
		if err != nil {
			return 0, 0, err
		}
		i = s.ws(keyEnd)
		if i >= len(data) || data[i] != ':' {
			return 0, 0, s.fail(i, "where ':' was expected")
		}
		v := s.ws(i + 1)
		if v >= len(data) {
			return 0, 0, s.fail(v, "where a value was expected")
		}
		if i, err = s.value(v); err != nil {
			return 0, 0, err
		}
		if keyIs(data[keyStart:keyEnd], esc, "eventName") {
			if data[v] == '"' && i-v > 2 {
				reason = -1
			} else {
				reason = DropInvalidName
			}
		}
		i = s.ws(i)
		if i >= len(data) {
			return 0, 0, s.fail(i, "in an event")
		}
		if data[i] == '}' {
			s.depth--
			return i + 1, reason, nil
		}
		if data[i] != ',' {
			return 0, 0, s.fail(i, "where ',' or '}' was expected")
		}
		i = s.ws(i + 1)
	}
}

// value validates the JSON value starting at data[i] (not whitespace) and returns its end.
func (s *scanner) value(i int) (int, error) {
	data := s.data
	if i >= len(data) {
		return 0, s.fail(i, "where a value was expected")
	}
	switch c := data[i]; {
	case c == '"':
		end, _, err := s.str(i)
		return end, err
	case c == '{':
		return s.object(i)
	case c == '[':
		return s.array(i)
	case c == '-' || c >= '0' && c <= '9':
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return 0, s.fail(i, "where a value was expected")
}

func (s *scanner) literal(i int, lit string) (int, error) {
	if len(s.data)-i < len(lit) || string(s.data[i:i+len(lit)]) != lit {
		return 0, s.fail(i, "in a literal")
	}
	return i + len(lit), nil
}

func (s *scanner) object(i int) (int, error) {
	data := s.data
	s.depth++
	if s.depth > maxDepth {
		return 0, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	i = s.ws(i + 1)
	if i < len(data) && data[i] == '}' {
		s.depth--
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, s.fail(i, "where an object key was expected")
		}
		end, _, err := s.str(i)
		if err != nil {
			return 0, err
		}
		i = s.ws(end)
		if i >= len(data) || data[i] != ':' {
			return 0, s.fail(i, "where ':' was expected")
		}
		if i, err = s.value(s.ws(i + 1)); err != nil {
			return 0, err
		}
		i = s.ws(i)
		if i >= len(data) {
			return 0, s.fail(i, "in an object")
		}
		if data[i] == '}' {
			s.depth--
			return i + 1, nil
		}
		if data[i] != ',' {
			return 0, s.fail(i, "where ',' or '}' was expected")
		}
		i = s.ws(i + 1)
	}
}

func (s *scanner) array(i int) (int, error) {
	data := s.data
	s.depth++
	if s.depth > maxDepth {
		return 0, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	i = s.ws(i + 1)
	if i < len(data) && data[i] == ']' {
		s.depth--
		return i + 1, nil
	}
	for {
		end, err := s.value(i)
		if err != nil {
			return 0, err
		}
		i = s.ws(end)
		if i >= len(data) {
			return 0, s.fail(i, "in an array")
		}
		if data[i] == ']' {
			s.depth--
			return i + 1, nil
		}
		if data[i] != ',' {
			return 0, s.fail(i, "where ',' or ']' was expected")
		}
		i = s.ws(i + 1)
	}
}

// str validates the string at data[i] == '"' and returns the index after its closing quote and
// whether it has escapes. Invalid UTF-8 is accepted, as encoding/json does (it decodes to U+FFFD).
func (s *scanner) str(i int) (end int, esc bool, err error) {
	data := s.data
	i++
	for i < len(data) {
		// Fast path: most string bytes need no attention. Test 8 bytes at a time for '"', '\\' or a
		// control byte (SWAR); the lowest flagged byte is exact (borrows only run upwards), so it is
		// where the next special byte is.
		for i+8 <= len(data) {
			w := binary.LittleEndian.Uint64(data[i:])
			if m := (w-ones*0x20)&^w&highs | hasZero(w^(ones*'"')) | hasZero(w^(ones*'\\')); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto special
			}
			i += 8
		}
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i >= len(data) {
			break
		}
	special:
		c := data[i]
		switch {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(data) {
				return 0, false, s.fail(i+1, "in a string escape")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(data)-i < 6 {
					return 0, false, s.fail(len(data), "in a \\u escape")
				}
				for k := i + 2; k < i+6; k++ {
					if !isHex(data[k]) {
						return 0, false, s.fail(k, "in a \\u escape")
					}
				}
				i += 6
			default:
				return 0, false, s.fail(i+1, "in a string escape")
			}
		case c < 0x20:
			return 0, false, s.fail(i, "in a string (control characters must be escaped)")
		default:
			i++
		}
	}
	return 0, false, s.fail(i, "in a string")
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZero is non-zero when one of w's bytes is zero.
func hasZero(w uint64) uint64 { return (w - ones) & ^w & highs }

// plain marks the bytes that may appear in a string as they are: not '"', '\\' or a control byte.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number(i int) (int, error) {
	data := s.data
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		return 0, s.fail(i, "in a number")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return 0, s.fail(i, "in a number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return 0, s.fail(i, "in a number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	return i, nil
}
