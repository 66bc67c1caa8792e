package configcache

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Format is a download_config_specs wire format.
type Format int

// The two formats SDKs ask for.
const (
	// FormatV1 is the legacy format (arrays of specs), served on /v1/download_config_specs.
	FormatV1 Format = 1
	// FormatV2 is the dcs-v2 format (maps + condition_map), served on /v2/download_config_specs.
	FormatV2 Format = 2
)

// formats lists every Format, for loops.
var formats = [...]Format{FormatV1, FormatV2}

// String is "v1" or "v2", as in the URL path.
func (f Format) String() string {
	switch f {
	case FormatV1:
		return "v1"
	case FormatV2:
		return "v2"
	}
	return fmt.Sprintf("format(%d)", int(f))
}

func (f Format) valid() bool { return f == FormatV1 || f == FormatV2 }

// other is the format an offline file is converted to.
func (f Format) other() Format {
	if f == FormatV1 {
		return FormatV2
	}
	return FormatV1
}

// Source says where an entry's payload came from.
type Source string

// Sources of entries.
const (
	SourceUpstream Source = "upstream" // fetched from Statsig by this proxy
	SourceShare    Source = "share"    // read from the region's JetStream KV bucket
	SourceOffline  Source = "offline"  // read from a rulesets.offline file
)

// Model is the compiled form of a rule set that the evaluation endpoints use (an *evalcore.RuleSet
// once wired). The cache only needs its time and checksum.
type Model interface {
	// Time is the rule set's "time" (lcut, ms since epoch).
	Time() int64
	// Checksum is the rule set's "checksum", "" when absent.
	Checksum() string
}

// Compiler compiles a payload into a Model. It must reject a payload that is not a rule set; a
// payload it rejects never replaces a good one.
type Compiler func(payload []byte) (Model, error)

// Converter converts a rule-set payload into the other wire format (offline files are served in
// both formats).
type Converter func(payload []byte, to Format) ([]byte, error)

// Entry is one rule set in one format as served to SDKs. It is immutable once published: readers
// get it from an atomic pointer and never lock.
type Entry struct {
	// Format is the wire format of Payload.
	Format Format
	// Payload is the JSON body served to SDKs.
	Payload []byte
	// Gzip is Payload gzip-compressed once, served to clients that accept gzip.
	Gzip []byte
	// Time is the rule set's "time" (lcut), compared with an SDK's sinceTime.
	Time int64
	// Checksum is the rule set's "checksum" ("" for v1 payloads, which have none).
	Checksum string
	// ETag is a strong validator of Payload (quoted); the gzip representation's is GzipETag.
	ETag string
	// GzipETag validates the Gzip representation.
	GzipETag string
	// Model is the compiled rule set.
	Model Model
	// Source says where the payload came from.
	Source Source
	// Received is when this proxy got the payload.
	Received time.Time
}

// Errors of Get, RuleSet and IDLists. Match them with errors.Is.
var (
	// ErrUnknownKey: the key is not a server secret key, or (offline-only setups) not configured.
	ErrUnknownKey = errors.New("configcache: unknown SDK key")
	// ErrNotAllowed: allowed_sdk_keys is set and does not list the key. Statsig is not asked.
	ErrNotAllowed = errors.New("configcache: SDK key is not in allowed_sdk_keys")
	// ErrInvalidKey: Statsig refused the key (401/403) within rulesets.invalid_key_ttl.
	ErrInvalidKey = errors.New("configcache: Statsig refused this SDK key")
	// ErrUnavailable: no rule set is cached for the key and Statsig could not be reached.
	ErrUnavailable = errors.New("configcache: rule set unavailable")
	// ErrFormatUnavailable: an offline rule set could not be converted to the requested format.
	ErrFormatUnavailable = errors.New("configcache: rule set not available in this format")
	// ErrClosed: the cache is closed.
	ErrClosed = errors.New("configcache: closed")
)

// errNoUpdates is what parseHead reports for {"has_updates":false}.
var errNoUpdates = errors.New("configcache: has_updates is false")

// head is the part of a payload the cache reads itself.
type head struct {
	HasUpdates *bool           `json:"has_updates"`
	Time       json.Number     `json:"time"`
	Checksum   json.RawMessage `json:"checksum"`
	Format     string          `json:"response_format"`
	Gates      json.RawMessage `json:"feature_gates"`
	Configs    json.RawMessage `json:"dynamic_configs"`
	Layers     json.RawMessage `json:"layer_configs"`
}

// parsedHead is what the cache knows of a payload without compiling it.
type parsedHead struct {
	time     int64
	checksum string
	format   Format
}

// parseHead checks that payload is a rule set (a JSON object with at least one of feature_gates,
// dynamic_configs, layer_configs), and reads its time, checksum and format. {"has_updates":false}
// gives errNoUpdates.
func parseHead(payload []byte) (parsedHead, error) {
	var h head
	if err := json.Unmarshal(payload, &h); err != nil {
		return parsedHead{}, fmt.Errorf("not a JSON object: %w", err)
	}
	present := func(r json.RawMessage) bool { return len(r) > 0 && !bytes.Equal(r, []byte("null")) }
	if !present(h.Gates) && !present(h.Configs) && !present(h.Layers) {
		if h.HasUpdates != nil && !*h.HasUpdates {
			return parsedHead{}, errNoUpdates
		}
		return parsedHead{}, errors.New("not a rule set: no feature_gates, dynamic_configs or layer_configs")
	}
	var p parsedHead
	if h.Time != "" {
		t, err := h.Time.Int64()
		if err != nil {
			// Some producers write the time as a float; accept whole numbers.
			f, ferr := h.Time.Float64()
			if ferr != nil || f != float64(int64(f)) {
				return parsedHead{}, fmt.Errorf("time is not an integer: %s", h.Time)
			}
			t = int64(f)
		}
		p.time = t
	}
	if len(h.Checksum) > 0 {
		var s string
		if json.Unmarshal(h.Checksum, &s) == nil {
			p.checksum = s
		} else {
			p.checksum = string(h.Checksum) // a number: keep its text
		}
	}
	p.format = FormatV1
	if h.Format == "dcs-v2" || firstNonSpace(h.Gates) == '{' || firstNonSpace(h.Configs) == '{' || firstNonSpace(h.Layers) == '{' {
		p.format = FormatV2
	}
	// A section of the wrong kind would make SDKs drop the whole payload (or worse, half of it).
	want, kind := byte('['), "a list"
	if p.format == FormatV2 {
		want, kind = '{', "an object"
	}
	for _, s := range []struct {
		name string
		raw  json.RawMessage
	}{{"feature_gates", h.Gates}, {"dynamic_configs", h.Configs}, {"layer_configs", h.Layers}} {
		if present(s.raw) && firstNonSpace(s.raw) != want {
			return parsedHead{}, fmt.Errorf("%s is not %s in a %s rule set", s.name, kind, p.format)
		}
	}
	return p, nil
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// basicModel is the Model of CheckRuleSet: time and checksum only.
type basicModel struct {
	time     int64
	checksum string
}

func (m basicModel) Time() int64      { return m.time }
func (m basicModel) Checksum() string { return m.checksum }

// CheckRuleSet is the Compiler used when Options.Compile is nil: it accepts any JSON object with
// rule-set sections and returns a Model holding its time and checksum only.
func CheckRuleSet(payload []byte) (Model, error) {
	h, err := parseHead(payload)
	if err != nil {
		return nil, err
	}
	return basicModel{time: h.time, checksum: h.checksum}, nil
}

// buildEntry validates and compiles payload and prepares everything a response needs.
func (c *Cache) buildEntry(payload []byte, f Format, src Source) (*Entry, error) {
	h, err := parseHead(payload)
	if err != nil {
		return nil, err
	}
	if h.format != f {
		return nil, fmt.Errorf("payload is in format %s, expected %s", h.format, f)
	}
	m, err := c.compile(payload)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if m == nil {
		return nil, errors.New("compile returned no model")
	}
	return newEntry(payload, f, h, m, src)
}

func newEntry(payload []byte, f Format, h parsedHead, m Model, src Source) (*Entry, error) {
	gz, err := gzipBytes(payload)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(payload)
	tag := hex.EncodeToString(sum[:12])
	return &Entry{
		Format:   f,
		Payload:  payload,
		Gzip:     gz,
		Time:     h.time,
		Checksum: h.checksum,
		ETag:     `"` + tag + `"`,
		GzipETag: `"` + tag + `-gzip"`,
		Model:    m,
		Source:   src,
		Received: time.Now(),
	}, nil
}

func gzipBytes(p []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(p)/6 + 64)
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(p); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ClientInfo identifies the SDK whose request made the cache fetch a key; it is forwarded upstream
// (STATSIG-SDK-TYPE, STATSIG-SDK-VERSION) on that key's fetches, as the SDK would have sent them.
type ClientInfo struct {
	SDKType    string
	SDKVersion string
}

type clientInfoKey struct{}

// WithClientInfo returns ctx carrying the requesting SDK's identity for Get.
func WithClientInfo(ctx context.Context, ci ClientInfo) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, ci)
}

func clientInfoFrom(ctx context.Context) ClientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(ClientInfo)
	return ci
}
