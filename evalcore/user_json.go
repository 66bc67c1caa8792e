package evalcore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
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

// memberView reads a member of the validated user object that the reference
// expects to be an object (custom, privateAttributes, customIDs,
// statsigEnvironment) the way its JavaScript binding reads it:
//   - an object: obj is raw itself;
//   - a number or a boolean: obj is {};
//   - a string or an array: indexed is true and elems are its entries, keyed
//     "0", "1", ... in order: a string's UTF-16 code units, each a one-unit
//     string (a surrogate, paired or not, reads as U+FFFD), or an array's
//     elements;
//   - null or an absent member (nil raw): nothing (the reference drops null).
//
// clone makes the entries' raw texts alias a copy of raw rather than raw.
// Entries are taken from *budget; when there are more, none are built and the
// error is ErrUserTooManyEntries.
//
// A string or an array of n bytes can stand for about n entries, more than an
// object of that size holds, so they are built directly, each in constant
// time, rather than written out as an object and parsed: the keys share one
// allocation and equal entries one value.
func memberView(raw []byte, clone bool, budget *int) (obj []byte, elems []*indexedElem, indexed bool, err error) {
	if len(raw) == 0 {
		return nil, nil, false, nil
	}
	switch raw[0] {
	case '{':
		return raw, nil, false, nil
	case 'n':
		return nil, nil, false, nil
	case '"':
		elems, err = stringUnits(raw, budget)
		return nil, elems, true, err
	case '[':
		if clone {
			raw = bytes.Clone(raw)
		}
		elems, err = arrayElems(raw, budget)
		return nil, elems, true, err
	}
	return emptyObject, nil, false, nil // (shared: the readers only read it)
}

// maxExpandedEntries bounds the entries ParseUser builds, in all, for the
// strings and arrays it reads as objects: each costs a map entry, about a
// hundred bytes and as many nanoseconds, and a string stands for one entry a
// byte. A user of the proxy's default limits.max_user_bytes (64 KiB) never
// has more.
const maxExpandedEntries = 1 << 16

// ErrUserTooManyEntries is ParseUser's error (wrapped) for a user whose
// strings and arrays read as objects stand for more than maxExpandedEntries
// entries.
var ErrUserTooManyEntries = fmt.Errorf("strings and arrays read as objects (custom, privateAttributes, customIDs, statsigEnvironment) stand for more than %d entries", maxExpandedEntries)

// takeEntries takes n entries from budget.
func takeEntries(budget *int, n int) error {
	if n > *budget {
		return ErrUserTooManyEntries
	}
	*budget -= n
	return nil
}

// indexedElem is one entry of a string or an array read as an object.
type indexedElem struct {
	raw []byte // the entry's compact JSON text
	v   value  // attributeValue(raw)
}

// stringUnits is the entries of a string member: its UTF-16 code units.
// Equal units share an entry.
func stringUnits(raw []byte, budget *int) ([]*indexedElem, error) {
	s, _ := jsonString(raw)
	n := 0
	for _, r := range s {
		n++
		if r > 0xFFFF {
			n++
		}
	}
	if err := takeEntries(budget, n); err != nil {
		return nil, err
	}
	ascii := asciiUnits()
	var other map[rune]*indexedElem // the other units seen, by code point
	elems := make([]*indexedElem, 0, n)
	for _, r := range s {
		if r < utf8.RuneSelf {
			elems = append(elems, &ascii[r])
			continue
		}
		units := 1
		if r > 0xFFFF {
			units, r = 2, utf8.RuneError
		}
		e := other[r]
		if e == nil {
			if other == nil {
				other = make(map[rune]*indexedElem)
			}
			e = newUnitElem(r)
			other[r] = e
		}
		for ; units > 0; units-- {
			elems = append(elems, e)
		}
	}
	return elems, nil
}

// asciiUnits is the entries of a string's ASCII code units, built once.
var asciiUnits = sync.OnceValue(func() *[utf8.RuneSelf]indexedElem {
	var t [utf8.RuneSelf]indexedElem
	for r := range t {
		t[r] = *newUnitElem(rune(r))
	}
	return &t
})

func newUnitElem(r rune) *indexedElem {
	v := newStringValue(string(r))
	return &indexedElem{raw: appendJSONString(nil, v.str), v: v}
}

// arrayElems is the entries of an array member: its elements, their raw
// texts aliasing raw.
func arrayElems(raw []byte, budget *int) ([]*indexedElem, error) {
	n := 0
	for i := skipJSONSpace(raw, 1); i < len(raw) && raw[i] != ']'; n++ {
		i = nextArrayElem(raw, endOfJSONValue(raw, i))
	}
	if err := takeEntries(budget, n); err != nil {
		return nil, err
	}
	elems := make([]*indexedElem, 0, n)
	var seen elemCache
	for i := skipJSONSpace(raw, 1); i < len(raw) && raw[i] != ']'; {
		end := endOfJSONValue(raw, i)
		e, err := seen.get(raw[i:end:end])
		if err != nil {
			return nil, err
		}
		elems = append(elems, e)
		i = nextArrayElem(raw, end)
	}
	return elems, nil
}

// nextArrayElem is where the array element after the one ending at i starts
// (at the closing bracket when there is none).
func nextArrayElem(raw []byte, i int) int {
	i = skipJSONSpace(raw, i)
	if i < len(raw) && raw[i] == ',' {
		i = skipJSONSpace(raw, i+1)
	}
	return i
}

// elemCache remembers the last entries built for array elements, by text, so
// that an array repeating a few elements costs an entry for each only once.
type elemCache [64]*indexedElem

// get returns the entry of an element (its raw text, a valid JSON value).
func (c *elemCache) get(raw []byte) (*indexedElem, error) {
	h := uint32(len(raw))
	for i := 0; i < len(raw) && i < 16; i++ {
		h = (h ^ uint32(raw[i])) * 16777619
	}
	slot := &c[h%uint32(len(c))]
	if *slot != nil && bytes.Equal((*slot).raw, raw) {
		return *slot, nil
	}
	v, err := attributeValue(raw)
	if err != nil {
		return nil, err
	}
	if !isCompact(raw) {
		raw = compactJSON(raw)
	}
	*slot = &indexedElem{raw: raw, v: v}
	return *slot, nil
}

// indexKeys is the keys "0", "1", ... of an object read from a string or an
// array, all in one string.
type indexKeys string

func newIndexKeys(n int) indexKeys {
	var b strings.Builder
	b.Grow(indexKeyOffset(n))
	var d [20]byte
	for i := 0; i < n; i++ {
		b.Write(strconv.AppendInt(d[:0], int64(i), 10))
	}
	return indexKeys(b.String())
}

// indexKeyOffset is where key i starts: the length of the keys before it.
func indexKeyOffset(i int) int {
	off, digits, lo := 0, 1, 0
	for hi := 10; i >= hi; hi *= 10 {
		off += (hi - lo) * digits
		lo, digits = hi, digits+1
	}
	return off + (i-lo)*digits
}

// at is key i.
func (k indexKeys) at(i int) string {
	return string(k[indexKeyOffset(i):indexKeyOffset(i+1)])
}

// lexIndices yields 0, 1, ... n-1 in the order of their decimal keys as
// strings (0, 1, 10, 100, ..., 11, ...), the order sorting the keys gives,
// without sorting them.
func lexIndices(n int) iter.Seq[int] {
	return func(yield func(int) bool) {
		if n <= 0 || !yield(0) {
			return
		}
		cur := 1
		for range n - 1 {
			if !yield(cur) {
				return
			}
			if cur*10 < n {
				cur *= 10 // the keys extending this one come next
				continue
			}
			for cur%10 == 9 || cur+1 >= n {
				cur /= 10 // no next sibling: back to the parent's
			}
			cur++
		}
	}
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
