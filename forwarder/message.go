package forwarder

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sigedge/sigedge/internal/wire"
)

// Endpoints a batch can come in on; a batch goes out on the same one.
const (
	endpointLogEvent = wire.EndpointLogEvent
	endpointRgstr    = wire.EndpointRgstr
)

// message is one event-batch message pulled from the stream and held until it is acked, dead-lettered
// or NAKed. Its events are not copied: events and meta are slices of the message's data.
type message struct {
	msg        jetstream.Msg
	key        string // the SDK key, never logged
	keyHash    string
	endpoint   string
	sdkType    string
	sdkVersion string
	events     []byte // the elements of the body's "events" array, without the brackets
	count      int    // number of elements in events
	meta       []byte // the body's "statsigMetadata" value; nil when absent or null
	extra      []byte // other top-level fields of the body, `"name":value` joined by commas
	size       int    // bytes held in memory for this message (its data, and its JSON when compressed)
	seq        uint64 // stream sequence, for logs and dead-letter ids
	published  time.Time
	// clockOffset is the SDK's clock minus the proxy's when the proxy received the batch (from
	// MsgClientTime and MsgReceivedAt); hasOffset says whether both were there.
	clockOffset time.Duration
	hasOffset   bool
}

// errMalformed marks a message that can never be sent: it is dead-lettered at once.
var errMalformed = errors.New("malformed event batch")

// parseMessage reads the headers and body of a stream message. Errors wrap errMalformed.
func parseMessage(m jetstream.Msg) (*message, error) {
	h := m.Headers()
	out := &message{msg: m, size: len(m.Data())}
	if md, err := m.Metadata(); err == nil {
		out.seq = md.Sequence.Stream
		out.published = md.Timestamp
	}
	out.key = h.Get(wire.MsgSDKKey)
	if out.key == "" {
		return out, fmt.Errorf("%w: no %s header", errMalformed, wire.MsgSDKKey)
	}
	out.keyHash = wire.KeyHash(out.key)
	out.sdkType = h.Get(wire.MsgSDKType)
	out.sdkVersion = h.Get(wire.MsgSDKVersion)
	switch ep := h.Get(wire.MsgEndpoint); ep {
	case "", endpointLogEvent:
		// A message without the header predates it: log_event was the only intake then.
		out.endpoint = endpointLogEvent
	case endpointRgstr:
		out.endpoint = endpointRgstr
	default:
		return out, fmt.Errorf("%w: unknown %s %q", errMalformed, wire.MsgEndpoint, ep)
	}
	if ct, err := strconv.ParseInt(h.Get(wire.MsgClientTime), 10, 64); err == nil && ct > 0 {
		if rt, err := strconv.ParseInt(h.Get(wire.MsgReceivedAt), 10, 64); err == nil && rt > 0 {
			out.clockOffset, out.hasOffset = time.Duration(ct-rt)*time.Millisecond, true
		}
	}
	encoding := h.Get(wire.MsgEncoding)
	body, err := wire.DecodeBody(encoding, m.Data())
	if err != nil {
		return out, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if encoding != "" {
		out.size += len(body) // the decoded copy is held beside the stored bytes
	}
	p, err := parseBody(body)
	if err != nil {
		return out, fmt.Errorf("%w: %v", errMalformed, err)
	}
	out.events, out.count, out.meta, out.extra = p.events, p.count, p.meta, p.extra
	return out, nil
}

// bodyParts are the pieces of a batch body the forwarder needs, as slices of the body (extra is
// copied, and only when there are other fields).
type bodyParts struct {
	events []byte // the elements of the "events" array, without the brackets
	count  int    // number of elements
	meta   []byte // the "statsigMetadata" value; nil when absent or null
	extra  []byte // other top-level fields, `"name":value` joined by commas
}

// parseBody finds the events array, the statsigMetadata value and any other top-level fields of a
// batch body without copying or decoding the events: the forwarder only concatenates them.
func parseBody(data []byte) (p bodyParts, err error) {
	if !json.Valid(data) {
		return p, errors.New("body is not valid JSON")
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return p, errors.New("body is not a JSON object")
	}
	i++
	found := false
	for {
		i = skipSpace(data, i)
		if data[i] == '}' {
			break
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		kEnd := skipValue(data, i)
		name := data[i:kEnd]
		i = skipSpace(data, kEnd)
		i = skipSpace(data, i+1) // the colon
		vEnd := skipValue(data, i)
		value := data[i:vEnd]
		switch keyName(name) {
		case "events":
			if value[0] != '[' {
				return p, errors.New(`"events" is not an array`)
			}
			p.events, p.count = arrayElements(value)
			found = true
		case "statsigMetadata":
			if string(value) != "null" {
				p.meta = value
			}
		default:
			// Kept as the SDK sent them (Statsig's own forward proxy keeps unknown fields too).
			if p.extra != nil {
				p.extra = append(p.extra, ',')
			}
			p.extra = append(p.extra, name...)
			p.extra = append(p.extra, ':')
			p.extra = append(p.extra, value...)
		}
		i = vEnd
	}
	if !found {
		return bodyParts{}, errors.New(`body has no "events" array`)
	}
	return p, nil
}

// keyName returns an object key without its quotes (unescaping only when needed).
func keyName(quoted []byte) string {
	for _, c := range quoted {
		if c == '\\' {
			s, err := strconv.Unquote(string(quoted))
			if err != nil {
				var v string
				if json.Unmarshal(quoted, &v) == nil {
					return v
				}
				return ""
			}
			return s
		}
	}
	return string(quoted[1 : len(quoted)-1])
}

// arrayElements returns the inside of a valid JSON array, trimmed, and its element count.
func arrayElements(arr []byte) ([]byte, int) {
	i := skipSpace(arr, 1)
	if arr[i] == ']' {
		return nil, 0
	}
	start, count := i, 0
	end := i
	for {
		end = skipValue(arr, i)
		count++
		i = skipSpace(arr, end)
		if arr[i] == ']' {
			break
		}
		i = skipSpace(arr, i+1) // the comma
	}
	return arr[start:end], count
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i]. b must be valid JSON (json.Valid).
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index after the closing quote of the string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
