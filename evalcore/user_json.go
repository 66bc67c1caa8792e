package evalcore

import (
	"encoding/json"
	"errors"
)

// userMembers walks the members of a JSON object that was already validated,
// in document order, without building a map: ParseUser reads a handful of
// known keys and the map was most of its allocations.
type userMembers struct {
	t        []byte
	i        int
	key, val []byte // the current member: key as its raw literal (quotes included), value aliasing t
}

// newUserMembers starts a walk over raw, a valid JSON object (leading space allowed).
func newUserMembers(raw []byte) userMembers {
	t := trimJSONSpace(raw)
	return userMembers{t: t, i: skipJSONSpace(t, 1)}
}

// next moves to the next member and reports whether there is one.
func (m *userMembers) next() bool {
	t, i := m.t, m.i
	if i >= len(t) || t[i] == '}' {
		return false
	}
	kEnd := endOfJSONString(t, i)
	m.key = t[i:kEnd]
	i = skipJSONSpace(t, kEnd) + 1 // ':'
	i = skipJSONSpace(t, i)
	vEnd := endOfJSONValue(t, i)
	m.val = t[i:vEnd:vEnd] // capacity clipped: an append copies instead of writing into the input
	i = skipJSONSpace(t, vEnd)
	if i < len(t) && t[i] == ',' {
		i = skipJSONSpace(t, i+1)
	}
	m.i = i
	return true
}

// countMembers is how many members a valid JSON object has (duplicates included).
func countMembers(raw []byte) int {
	n := 0
	for m := newUserMembers(raw); m.next(); {
		n++
	}
	return n
}

// memberKey decodes a member's key literal as encoding/json does.
func memberKey(lit []byte) (string, error) {
	if s, ok := fastString(lit); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return "", err
	}
	return s, nil
}

// checkUserObject is decodeObject's validation without the map: the same
// errors for a non-object and for invalid JSON.
func checkUserObject(raw []byte) error {
	if firstByte(raw) != '{' {
		return errors.New("not a JSON object")
	}
	if json.Valid(raw) {
		return nil
	}
	var m map[string]json.RawMessage
	err := json.Unmarshal(raw, &m) // for its error message
	if err == nil {
		err = errors.New("invalid JSON")
	}
	return err
}

// userScalar builds the value of a top-level field or customIDs entry: a
// string or a number; anything else is ignored (ok false). raw is a member
// value of a validated object, so it has no surrounding space.
func userScalar(raw []byte) (value, bool) {
	switch c := raw[0]; {
	case c == '"':
		if s, ok := jsonString(raw); ok {
			return newStringValue(s), true
		}
	case c == '-' || c >= '0' && c <= '9':
		return newNumberValue(numberFloat(json.Number(raw))), true
	}
	return value{}, false
}

// attributeValue is dynamicFromJSON(decodeAny(raw)) with the scalars built
// directly, skipping the interface boxing; arrays and objects take the
// general path.
func attributeValue(raw []byte) (value, error) {
	switch c := raw[0]; {
	case c == '"':
		if s, ok := jsonString(raw); ok {
			return newStringValue(s), nil
		}
	case c == 't':
		return newBoolValue(true), nil
	case c == 'f':
		return newBoolValue(false), nil
	case c == 'n':
		return value{kind: kindNull}, nil
	case c == '-' || c >= '0' && c <= '9':
		return newNumberValue(numberFloat(json.Number(raw))), nil
	}
	v, err := decodeAny(raw)
	if err != nil {
		return value{}, err
	}
	return dynamicFromJSON(v), nil
}

// djb2Add continues djb2 over s: djb2Add(djb2Add(0, a), b) == djb2(a+b), as
// both range over whole runes and a rune never spans the two parts of valid
// (or ASCII-joined) text.
func djb2Add(h uint32, s string) uint32 {
	for _, r := range s {
		h = h*31 + uint32(r)
	}
	return h
}
