package proxy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// decodeEvalRequest fills req from a request body exactly as json.Unmarshal(data, req) does.
// The shapes clients send (known keys spelled exactly, values of the expected types) take one
// pass that validates and decodes, without reflection; anything else (invalid JSON, a value of
// another type, a key that matches a field only case-insensitively or needs unescaping, very
// deep nesting) is left to json.Unmarshal, so errors and edge cases stay what encoding/json
// makes of them. The fast path must therefore never accept what encoding/json refuses; refusing
// what it accepts only costs time.
func decodeEvalRequest(data []byte, req *evalRequest) error {
	if fastDecodeEvalRequest(data, req) {
		return nil
	}
	*req = evalRequest{}
	return json.Unmarshal(data, req)
}

// evalRequestFields are evalRequest's JSON names; a key equal to one of them ignoring case is
// what encoding/json would match, so such a key is left to it.
var evalRequestFields = []string{
	"user", "gateName", "gateNames", "configName", "configNames", "layerName", "layerNames",
	"disableExposureLogging", "statsigMetadata", "hash", "sinceTime",
}

// fastDecodeEvalRequest decodes the common shapes of a request; false means "use json.Unmarshal"
// (req may then hold part of the request).
func fastDecodeEvalRequest(data []byte, req *evalRequest) bool {
	s := jsonScan{t: data}
	start := s.skipSpace(0)
	if start == len(data) || data[start] != '{' {
		return false
	}
	s.i = start + 1
	for {
		key, val, ok := s.member()
		if !ok {
			// The end of the object, which only space may follow.
			return !s.bad && s.skipSpace(s.i) == len(data)
		}
		switch string(key) {
		case `"user"`:
			req.User = val
		case `"gateName"`:
			if !decodeStringPtr(val, &req.GateName) {
				return false
			}
		case `"configName"`:
			if !decodeStringPtr(val, &req.ConfigName) {
				return false
			}
		case `"layerName"`:
			if !decodeStringPtr(val, &req.LayerName) {
				return false
			}
		case `"gateNames"`:
			if !decodeStringList(val, &req.GateNames) {
				return false
			}
		case `"configNames"`:
			if !decodeStringList(val, &req.ConfigNames) {
				return false
			}
		case `"layerNames"`:
			if !decodeStringList(val, &req.LayerNames) {
				return false
			}
		case `"disableExposureLogging"`:
			if !decodeBool(val, &req.DisableExposureLogging) {
				return false
			}
		case `"statsigMetadata"`:
			if !decodeStatsigMetadata(val, req) {
				return false
			}
		case `"hash"`:
			if isJSONNull(val) {
				continue // null leaves a string as it was
			}
			h, ok := jsonStringValue(val)
			if !ok {
				return false
			}
			req.Hash = h
		case `"sinceTime"`:
			req.SinceTime = val
		default:
			if !ignorableKey(key, evalRequestFields) {
				return false
			}
		}
	}
}

// ignorableKey reports whether encoding/json would ignore a member with this key literal: plain
// ASCII, no escapes, and not one of fields in another case.
func ignorableKey(lit []byte, fields []string) bool {
	body := lit[1 : len(lit)-1]
	for _, c := range body {
		if c == '\\' || c >= utf8.RuneSelf {
			return false // unescaping or Unicode case folding: encoding/json decides
		}
	}
	for _, f := range fields {
		if strings.EqualFold(string(body), f) {
			return false
		}
	}
	return true
}

func decodeStatsigMetadata(val []byte, req *evalRequest) bool {
	if isJSONNull(val) {
		return true // null leaves a struct as it was
	}
	if val[0] != '{' {
		return false
	}
	s := jsonScan{t: val, i: 1}
	for {
		key, v, ok := s.member()
		if !ok {
			return !s.bad
		}
		if string(key) == `"exposureLoggingDisabled"` {
			if !decodeBool(v, &req.StatsigMetadata.ExposureLoggingDisabled) {
				return false
			}
		} else if !ignorableKey(key, []string{"exposureLoggingDisabled"}) {
			return false
		}
	}
}

// decodeStringPtr decodes a string or null into a *string field.
func decodeStringPtr(val []byte, dst **string) bool {
	if isJSONNull(val) {
		*dst = nil
		return true
	}
	s, ok := jsonStringValue(val)
	if !ok {
		return false
	}
	*dst = &s
	return true
}

// decodeStringList decodes an array of strings or null into a []string field ([] gives an empty,
// non-nil list, as encoding/json does).
func decodeStringList(val []byte, dst *[]string) bool {
	if isJSONNull(val) {
		*dst = nil
		return true
	}
	if val[0] != '[' {
		return false
	}
	list := []string{}
	s := jsonScan{t: val, i: 1}
	for {
		el, ok := s.element()
		if !ok {
			if s.bad {
				return false
			}
			break
		}
		str, ok := jsonStringValue(el)
		if !ok {
			return false // null or another type: encoding/json's rules for those
		}
		list = append(list, str)
	}
	*dst = list
	return true
}

func decodeBool(val []byte, dst *bool) bool {
	switch string(val) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	case "null": // leaves it as it was
	default:
		return false
	}
	return true
}

func isJSONNull(val []byte) bool { return string(val) == "null" }

// jsonStringValue decodes a JSON string literal as encoding/json does; ok is false for another
// type.
func jsonStringValue(lit []byte) (string, bool) {
	if len(lit) < 2 || lit[0] != '"' {
		return "", false
	}
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body), true
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonScan walks the members of an object or the elements of an array and checks, as it goes,
// that they are JSON as encoding/json defines it (RFC 8259: strings without control characters
// and with valid escapes, the number grammar, the literals; any bytes ≥ 0x20 in strings, as
// encoding/json does not check UTF-8 there).
type jsonScan struct {
	t     []byte
	i     int  // just inside the container, or after a member or element and its comma
	depth int  // of the container
	limit int  // deepest nesting checked; 0: maxScanDepth
	more  bool // a comma was read: another member or element must follow
	bad   bool // invalid JSON, or nested deeper than the limit
}

// maxScanDepth bounds nesting (and recursion) for requests; deeper values are left to
// encoding/json.
const maxScanDepth = 64

// member returns the next member of an object: its key literal (quotes included) and its value.
// ok is false at the object's end (s.i is then after its '}') and on invalid JSON (s.bad).
func (s *jsonScan) member() (key, val []byte, ok bool) {
	t := s.t
	i := s.skipSpace(s.i)
	if !s.more && i < len(t) && t[i] == '}' {
		s.i = i + 1
		return nil, nil, false
	}
	kEnd, ok := s.skipString(i)
	if !ok {
		s.bad = true
		return nil, nil, false
	}
	j := s.skipSpace(kEnd)
	if j >= len(t) || t[j] != ':' {
		s.bad = true
		return nil, nil, false
	}
	vStart := s.skipSpace(j + 1)
	vEnd, ok := s.skipValue(vStart)
	if !ok || !s.next(vEnd, '}') {
		s.bad = true
		return nil, nil, false
	}
	return t[i:kEnd], t[vStart:vEnd:vEnd], true
}

// element returns the next element of an array; ok as for member.
func (s *jsonScan) element() (val []byte, ok bool) {
	t := s.t
	i := s.skipSpace(s.i)
	if !s.more && i < len(t) && t[i] == ']' {
		s.i = i + 1
		return nil, false
	}
	end, ok := s.skipValue(i)
	if !ok || !s.next(end, ']') {
		s.bad = true
		return nil, false
	}
	return t[i:end:end], true
}

// next moves past what follows a member or element: a comma, or the container's end (read by
// the following call).
func (s *jsonScan) next(i int, closing byte) bool {
	i = s.skipSpace(i)
	switch {
	case i < len(s.t) && s.t[i] == ',':
		s.i, s.more = i+1, true
	case i < len(s.t) && s.t[i] == closing:
		s.i, s.more = i, false
	default:
		return false
	}
	return true
}

// skipValue checks the value starting at i and returns the index after it.
func (s *jsonScan) skipValue(i int) (int, bool) {
	t := s.t
	if i >= len(t) {
		return i, false
	}
	switch c := t[i]; c {
	case '"':
		return s.skipString(i)
	case '{', '[':
		if s.depth >= cmp.Or(s.limit, maxScanDepth) {
			return i, false
		}
		inner := jsonScan{t: t, i: i + 1, depth: s.depth + 1, limit: s.limit}
		if c == '{' {
			for {
				if _, _, ok := inner.member(); !ok {
					break
				}
			}
		} else {
			for {
				if _, ok := inner.element(); !ok {
					break
				}
			}
		}
		return inner.i, !inner.bad
	case 't':
		return s.skipWord(i, "true")
	case 'f':
		return s.skipWord(i, "false")
	case 'n':
		return s.skipWord(i, "null")
	}
	return s.skipNumber(i)
}

func (s *jsonScan) skipWord(i int, word string) (int, bool) {
	if !bytes.HasPrefix(s.t[i:], []byte(word)) {
		return i, false
	}
	return i + len(word), true
}

// skipString checks the string literal starting at i.
func (s *jsonScan) skipString(i int) (int, bool) {
	t := s.t
	if i >= len(t) || t[i] != '"' {
		return i, false
	}
	for j := i + 1; j < len(t); j++ {
		switch c := t[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return j, false
		case c == '\\':
			j++
			if j >= len(t) {
				return j, false
			}
			switch t[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(t) {
					return j, false
				}
				for _, h := range t[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return j, false
					}
				}
				j += 4
			default:
				return j, false
			}
		}
	}
	return len(t), false
}

// skipNumber checks the number starting at i: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) skipNumber(i int) (int, bool) {
	t := s.t
	digits := func(j int) int {
		for j < len(t) && '0' <= t[j] && t[j] <= '9' {
			j++
		}
		return j
	}
	j := i
	if j < len(t) && t[j] == '-' {
		j++
	}
	switch {
	case j < len(t) && t[j] == '0':
		j++
	case j < len(t) && '1' <= t[j] && t[j] <= '9':
		j = digits(j)
	default:
		return j, false
	}
	if j < len(t) && t[j] == '.' {
		k := digits(j + 1)
		if k == j+1 {
			return k, false
		}
		j = k
	}
	if j < len(t) && (t[j] == 'e' || t[j] == 'E') {
		j++
		if j < len(t) && (t[j] == '+' || t[j] == '-') {
			j++
		}
		k := digits(j)
		if k == j {
			return k, false
		}
		j = k
	}
	return j, true
}

func (s *jsonScan) skipSpace(i int) int {
	for i < len(s.t) && (s.t[i] == ' ' || s.t[i] == '\t' || s.t[i] == '\n' || s.t[i] == '\r') {
		i++
	}
	return i
}
