package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strings"
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

// SDKInfo returns statsigMetadata.sdkType and sdkVersion, for SDKs that do not send the headers. A
// member that is not a string gives "", and the last of duplicate members wins, as encoding/json
// decodes them.
func (b *Batch) SDKInfo() (sdkType, sdkVersion string) {
	ok := eachMetadataMember(b.Metadata, func(key []byte, esc bool, value []byte) {
		switch {
		case keyFolds(key, esc, "sdkType"):
			sdkType = stringValue(value)
		case keyFolds(key, esc, "sdkVersion"):
			sdkVersion = stringValue(value)
		}
	})
	if !ok {
		return "", ""
	}
	return sdkType, sdkVersion
}

// SessionID returns statsigMetadata.sessionID: the SDK instance that sent the batch (every official
// SDK sends one), or "" when there is none or it is not a string.
func (b *Batch) SessionID() string {
	var id string
	if !eachMetadataMember(b.Metadata, func(key []byte, esc bool, value []byte) {
		if keyFolds(key, esc, "sessionID") {
			id = stringValue(value)
		}
	}) {
		return ""
	}
	return id
}

// eachMetadataMember calls visit with the raw key (quoted) and value of each member of the
// statsigMetadata object md, and reports whether md is an object. It walks md with the scanner:
// encoding/json took 7 % of the intake handler.
func eachMetadataMember(md []byte, visit func(key []byte, esc bool, value []byte)) bool {
	if len(md) == 0 || md[0] != '{' {
		return false
	}
	s := scanner{data: md}
	i, more, err := s.open(0)
	for err == nil && more {
		var keyEnd, v int
		var esc bool
		if keyEnd, esc, v, err = s.member(i); err != nil {
			break
		}
		key := md[i:keyEnd]
		if i, err = s.value(v); err != nil {
			break
		}
		visit(key, esc, md[v:i])
		i, more, err = s.next(i, '}')
	}
	return err == nil
}

// keyFolds reports whether the raw key (with quotes) names name when case is ignored, which is how
// encoding/json matches a key to a struct field.
func keyFolds(raw []byte, esc bool, name string) bool {
	if !esc {
		return bytes.EqualFold(raw[1:len(raw)-1], []byte(name))
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && strings.EqualFold(s, name)
}

// stringValue returns the JSON string raw decoded, or "" when raw is another kind of value.
func stringValue(raw []byte) string {
	if raw[0] != '"' {
		return ""
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c >= 0x80 {
			// Escapes, or non-ASCII that may be invalid UTF-8 (decoded to U+FFFD): the rare case.
			var out string
			_ = json.Unmarshal(raw, &out)
			return out
		}
	}
	return string(raw[1 : len(raw)-1])
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
	b := new(Batch)
	if err := b.Decode(data); err != nil {
		return nil, err
	}
	return b, nil
}

// Decode is DecodeBatch into b, reusing the memory of b's slices, for callers that keep batches in
// a pool: the Events slice of a 100-event batch was a third of the proxy's own allocations. After an
// error b holds nothing of use.
func (b *Batch) Decode(data []byte) error {
	if !haveBlockMasks || len(data) < minMaskedBody {
		return b.decode(data, nil)
	}
	m := getMasks()
	*m = fillBlockMasks(*m, data)
	err := b.decode(data, *m)
	putMasks(m)
	return err
}

// decode is Decode with the body's string masks, or nil to read strings byte by byte.
func (b *Batch) decode(data []byte, masks blockMasks) error {
	s := scanner{data: data, masks: masks}
	*b = Batch{Body: data, Events: b.Events[:0], Fields: b.Fields[:0]}
	i := s.ws(0)
	if i == len(data) {
		return fmt.Errorf("%w: empty body", ErrInvalidJSON)
	}
	if data[i] != '{' {
		end, err := s.value(i)
		if err != nil {
			return err
		}
		if j := s.ws(end); j != len(data) {
			return s.fail(j, "after the top-level value")
		}
		return fmt.Errorf("%w: the body must be a JSON object {\"events\":[…]}", ErrInvalidBatch)
	}
	var haveEvents, eventsIsList bool
	i, more, err := s.open(i)
	for err == nil && more {
		var keyEnd, v int
		var esc bool
		if keyEnd, esc, v, err = s.member(i); err != nil {
			break
		}
		switch key := data[i:keyEnd]; {
		case keyIs(key, esc, "events"):
			haveEvents = true
			b.Events, b.Total, b.Dropped = b.Events[:0], 0, DropCounts{}
			if eventsIsList = data[v] == '['; eventsIsList {
				i, err = s.events(v, b)
			} else {
				i, err = s.value(v)
			}
			if err == nil {
				b.EventsRaw = data[v:i]
			}
		case keyIs(key, esc, "statsigMetadata"):
			if i, err = s.value(v); err == nil {
				b.Metadata = data[v:i]
			}
		default:
			if end, verr := s.value(v); verr == nil {
				b.Fields = append(b.Fields, data[i:end])
				i = end
			} else {
				err = verr
			}
		}
		if err == nil {
			i, more, err = s.next(i, '}')
		}
	}
	if err != nil {
		return err
	}
	if j := s.ws(i); j != len(data) {
		return s.fail(j, "after the top-level object")
	}
	switch {
	case !haveEvents:
		return fmt.Errorf("%w: no \"events\" member", ErrInvalidBatch)
	case !eventsIsList:
		return fmt.Errorf("%w: \"events\" must be an array", ErrInvalidBatch)
	}
	return nil
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

// scanner validates JSON in one pass over a byte slice without allocating. Objects, events
// included, are walked by members, the hot loop; the body and arrays by open, then member (the body
// only) and a value, then next, until next finds the end.
type scanner struct {
	data  []byte
	depth int
	masks blockMasks // nil: strings are read byte by byte
}

func (s *scanner) fail(i int, where string) error {
	if i >= len(s.data) {
		return fmt.Errorf("%w: unexpected end of input %s", ErrInvalidJSON, where)
	}
	return fmt.Errorf("%w: unexpected %q at offset %d %s", ErrInvalidJSON, s.data[i], i, where)
}

// ws skips JSON whitespace. SDKs send compact JSON: the first test is almost always the last.
func (s *scanner) ws(i int) int {
	for i < len(s.data) && s.data[i] <= ' ' {
		switch s.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// open enters the object or array at data[i] ('{' or '['): it returns where its first member or
// element starts, or, for an empty one, the index after it and more == false.
func (s *scanner) open(i int) (_ int, more bool, err error) {
	if s.depth++; s.depth > maxDepth {
		return 0, false, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	closing := s.data[i] + 2 // '{'+2 is '}', '['+2 is ']'
	if i = s.ws(i + 1); i < len(s.data) && s.data[i] == closing {
		s.depth--
		return i + 1, false, nil
	}
	return i, true, nil
}

// member reads an object member's key at data[i] and the ':' after it: it returns the index after
// the key's closing quote, whether the key has escapes, and where the value starts (not whitespace).
func (s *scanner) member(i int) (keyEnd int, esc bool, v int, err error) {
	data := s.data
	if i >= len(data) || data[i] != '"' {
		return 0, false, 0, s.fail(i, "where an object key was expected")
	}
	if keyEnd, esc, err = s.str(i); err != nil {
		return 0, false, 0, err
	}
	if i = s.ws(keyEnd); i >= len(data) || data[i] != ':' {
		return 0, false, 0, s.fail(i, "where ':' was expected")
	}
	if v = s.ws(i + 1); v >= len(data) {
		return 0, false, 0, s.fail(v, "where a value was expected")
	}
	return keyEnd, esc, v, nil
}

// next reads what follows a member or element of the container that closing ends: a ',' (more is
// true, and the index is where the next one starts) or closing itself (more is false, the index is
// after it).
func (s *scanner) next(i int, closing byte) (_ int, more bool, err error) {
	data := s.data
	switch i = s.ws(i); {
	case i >= len(data):
		return 0, false, s.fail(i, "before the end of an object or array")
	case data[i] == ',':
		return s.ws(i + 1), true, nil
	case data[i] == closing:
		s.depth--
		return i + 1, false, nil
	}
	return 0, false, s.fail(i, "where ',' or '"+string(closing)+"' was expected")
}

// events scans the "events" array starting at data[i] == '[' and classifies each element.
func (s *scanner) events(i int, b *Batch) (int, error) {
	data := s.data
	if room := (len(data)-i)/512 + 8; cap(b.Events) < room {
		// Room for events of 512 bytes or more (SDK events are about that) in one allocation.
		b.Events = make([][]byte, 0, room)
	}
	i, more, err := s.open(i)
	for err == nil && more {
		start := i
		var end int
		reason := DropNotObject
		if i < len(data) && data[i] == '{' {
			end, reason, err = s.event(i)
		} else {
			end, err = s.value(i)
		}
		if err != nil {
			break
		}
		b.Total++
		if reason < 0 {
			b.Events = append(b.Events, data[start:end])
		} else {
			b.Dropped[reason]++
		}
		i, more, err = s.next(end, ']')
	}
	return i, err
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
	end, _, err := s.members(i, false)
	return end, err
}

// event scans one event object at data[i] == '{'. reason is -1 for a valid event, else why it is
// dropped.
func (s *scanner) event(i int) (end int, reason DropReason, err error) {
	return s.members(i, true)
}

// members walks the object at data[i] == '{'. For an event, it also says whether it has a valid
// "eventName" (reason -1) or why not. It is the hot loop of a batch (events and the objects in
// them), so it reads ':' and ',' or '}' itself and calls only str and, for values other than
// strings, value: calls to member and next took about 12 % of the validation.
func (s *scanner) members(i int, event bool) (_ int, reason DropReason, err error) {
	data := s.data
	if s.depth++; s.depth > maxDepth {
		return 0, 0, fmt.Errorf("%w: nesting deeper than %d", ErrInvalidJSON, maxDepth)
	}
	reason = DropMissingName
	if i = s.ws(i + 1); i < len(data) && data[i] == '}' {
		s.depth--
		return i + 1, reason, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, 0, s.fail(i, "where an object key was expected")
		}
		key, esc := i, false
		if end := s.strEnd(i); end > 0 {
			i = end
		} else if i, esc, err = s.str(i); err != nil {
			return 0, 0, err
		}
		if event && keyIs(data[key:i], esc, "eventName") {
			key = -1 // the value decides
		}
		if i = s.ws(i); i >= len(data) || data[i] != ':' {
			return 0, 0, s.fail(i, "where ':' was expected")
		}
		v := s.ws(i + 1)
		if v < len(data) && data[v] == '"' {
			if i = s.strEnd(v); i < 0 {
				i, _, err = s.str(v)
			}
		} else {
			i, err = s.value(v)
		}
		if err != nil {
			return 0, 0, err
		}
		if key < 0 {
			if data[v] == '"' && i-v > 2 {
				reason = -1
			} else {
				reason = DropInvalidName
			}
		}
		if i = s.ws(i); i < len(data) && data[i] == ',' {
			i = s.ws(i + 1)
			continue
		}
		if i < len(data) && data[i] == '}' {
			s.depth--
			return i + 1, reason, nil
		}
		return 0, 0, s.fail(i, "where ',' or '}' was expected")
	}
}

func (s *scanner) array(i int) (int, error) {
	i, more, err := s.open(i)
	for err == nil && more {
		if i, err = s.value(i); err != nil {
			break
		}
		i, more, err = s.next(i, ']')
	}
	return i, err
}

// str validates the string at data[i] == '"' and returns the index after its closing quote and
// whether it has escapes. Invalid UTF-8 is accepted, as encoding/json does (it decodes to U+FFFD).
func (s *scanner) str(i int) (end int, esc bool, err error) {
	// Long strings: the masks a block at a time (see blockMasks).
	for j := i + 1; len(s.masks) > 0; j += 64 {
		if p := s.masks.nextSpecial(j); p >= 0 {
			if s.data[p] == '"' {
				return p + 1, false, nil
			}
			break
		}
		if j>>6+1 >= len(s.masks) {
			break
		}
	}
	return s.readStr(i)
}

// strEnd is the index after the closing quote of the string at data[i] == '"' when the masks
// settle it within 64 bytes, else -1 (then str decides). It is inlined into the hot loop.
func (s *scanner) strEnd(i int) int {
	// nextSpecial written out: calling it put this over the inliner's budget.
	m, j := s.masks, i+1
	if b := j >> 6; b+1 < len(m) {
		if w := m[b]>>(j&63) | m[b+1]<<1<<(63-j&63); w != 0 {
			if p := j + bits.TrailingZeros64(w); s.data[p] == '"' {
				return p + 1
			}
		}
	}
	return -1
}

// readStr is str reading the string byte by byte: for inputs without masks, and strings the masks
// cannot settle.
func (s *scanner) readStr(i int) (end int, esc bool, err error) {
	data := s.data
	i++
	for {
		// Most string bytes need no attention: test 8 at a time for '"', '\\' or a control byte
		// (SWAR). The lowest flagged byte is exact (borrows only run upwards), so it is where the next
		// special byte is. The last few bytes are padded with quotes, flagged past the end: one loop
		// for the whole string.
		var w uint64
		if i+8 <= len(data) {
			w = binary.LittleEndian.Uint64(data[i:])
		} else {
			w = tailWord(data[i:])
		}
		// Control bytes and '"' are the bytes below 0x21 once bit 1 is flipped ('"'^2 is ' ').
		q := w ^ (ones * 2)
		if m := ((q-ones*0x21)&^q | hasZero(w^(ones*'\\'))) & highs; m == 0 {
			i += 8
			continue
		} else {
			i += bits.TrailingZeros64(m) >> 3
		}
		if i >= len(data) {
			return 0, false, s.fail(i, "in a string")
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c != '\\':
			return 0, false, s.fail(i, "in a string (control characters must be escaped)")
		case i+1 >= len(data):
			return 0, false, s.fail(i+1, "in a string escape")
		}
		esc = true
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
	}
}

// tailWord loads the last (fewer than 8) bytes of the input little-endian, padded with quotes.
func tailWord(rest []byte) uint64 {
	w := uint64(ones * '"')
	for k, c := range rest {
		w = w&^(0xff<<(8*k)) | uint64(c)<<(8*k)
	}
	return w
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZero has the high bit of w's lowest zero byte set (and maybe of higher bytes).
func hasZero(w uint64) uint64 { return (w - ones) &^ w }

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
