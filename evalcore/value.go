package evalcore

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// value is a user-side ("left") value with the views SC's DynamicValue offers.
// An absent value is represented by a nil *value.
type value struct {
	kind   valueKind
	str    string // str view (valid when hasStr)
	lower  string // lower-cased str view
	num    float64
	i      int64
	ts     int64
	b      bool
	hasStr bool
	hasNum bool
	hasInt bool
	hasTS  bool
	arr    []value
	obj    map[string]*value // object values: entries (for eq with object targets)
}

type valueKind uint8

const (
	kindNull valueKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// newStringValue builds the views of a JSON string, as SC does for user strings.
func newStringValue(s string) value {
	v := value{kind: kindString, str: s, lower: lowerString(s), hasStr: true}
	if f, ok := parseRustFloat(s); ok {
		v.num, v.hasNum = f, true
	}
	if n, ok := parseI64(s); ok {
		v.i, v.hasInt = n, true
	}
	if ts, ok := parseUserTimestamp(s); ok {
		v.ts, v.hasTS = ts, true
	}
	return v
}

// newNumberValue builds the views of a JSON number. Its str view is rendered
// from the float64 (Rust's f64 Display: shortest digits, never an exponent).
func newNumberValue(f float64) value {
	s := formatRustFloat(f)
	v := value{kind: kindNumber, str: s, lower: s, hasStr: true, num: f, hasNum: true}
	// SC's int view: Rust's saturating `f as i64`, kept when it converts
	// back to f exactly, so 2^63 and beyond read as i64::MAX.
	if i := f64ToI64(f); float64(i) == f {
		v.i, v.hasInt = i, true
	}
	return v
}

func newBoolValue(b bool) value {
	s := "false"
	if b {
		s = "true"
	}
	return value{kind: kindBool, b: b, str: s, lower: s, hasStr: true}
}

// formatRustFloat renders f like Rust's f64 Display.
func formatRustFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// parseRustFloat accepts exactly what Rust's str::parse::<f64> accepts:
// optional sign, then inf/infinity/nan (any case) or digits with an optional
// fraction and exponent; no whitespace, no underscores, no hex.
func parseRustFloat(s string) (float64, bool) {
	if s == "" {
		return 0, false
	}
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	// Rust matches these words ignoring ASCII case only.
	switch {
	case asciiEqualFold(body, "inf"), asciiEqualFold(body, "infinity"):
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case asciiEqualFold(body, "nan"):
		return math.NaN(), true
	}
	i, digits := 0, 0
	for i < len(body) && body[i] >= '0' && body[i] <= '9' {
		i++
		digits++
	}
	if i < len(body) && body[i] == '.' {
		i++
		for i < len(body) && body[i] >= '0' && body[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(body) && (body[i] == 'e' || body[i] == 'E') {
		i++
		if i < len(body) && (body[i] == '+' || body[i] == '-') {
			i++
		}
		expDigits := 0
		for i < len(body) && body[i] >= '0' && body[i] <= '9' {
			i++
			expDigits++
		}
		if expDigits == 0 {
			return 0, false
		}
	}
	if i != len(body) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// Out of range: Rust yields ±inf or ±0 where Go reports ErrRange.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f, true
		}
		return 0, false
	}
	return f, true
}

// parseUserTimestamp is SC's timestamp view of a user string: an i64, or
// (only when 8 ≤ len ≤ 20 and it contains '-', 'T' or ':') RFC 3339 or
// "YYYY-MM-DD HH:MM:SS" in UTC, as epoch milliseconds.
func parseUserTimestamp(s string) (int64, bool) {
	if n, ok := parseI64(s); ok {
		return n, true
	}
	if len(s) < 8 || len(s) > 20 || !strings.ContainsAny(s, "-T:") {
		return 0, false
	}
	return parseDateTime(s)
}

// parseTargetTimestamp is the timestamp view of a rule-set string (no length limit).
func parseTargetTimestamp(s string) (int64, bool) {
	if n, ok := parseI64(s); ok {
		return n, true
	}
	return parseDateTime(s)
}

func parseDateTime(s string) (int64, bool) {
	// Both layouts start with a four-digit year and '-' (time.Parse reads the
	// year as exactly four digits): skip the parsers, and the errors they
	// allocate, for anything else.
	if len(s) < 19 || s[4] != '-' || !isDigits(s[:4]) {
		return 0, false
	}
	if t, ok := parseRFC3339(s); ok {
		return t, true
	}
	if t, err := time.Parse("2006-01-02 15:04:05", s); err == nil {
		return t.UnixMilli(), true
	}
	return 0, false
}

// parseRFC3339 follows chrono's parse_from_rfc3339: date, 'T'/'t'/' ' separator,
// time with optional fraction, and a mandatory offset (Z or ±hh:mm).
func parseRFC3339(s string) (int64, bool) {
	if len(s) < 20 {
		return 0, false
	}
	if s[10] != 'T' && s[10] != 't' && s[10] != ' ' {
		return 0, false
	}
	norm := s[:10] + "T" + s[11:]
	if last := norm[len(norm)-1]; last == 'z' {
		norm = norm[:len(norm)-1] + "Z"
	}
	t, err := time.Parse(time.RFC3339Nano, norm)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// lowerString lower-cases like Rust's str::to_lowercase (ASCII fast path).
func lowerString(s string) string {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return rustLower(s)
		}
		upper = upper || c >= 'A' && c <= 'Z'
	}
	if upper {
		return strings.ToLower(s)
	}
	return s
}

// rustLower is str::to_lowercase for any text: per-character mappings as
// Go's, plus the two places Rust differs, the one multi-character mapping
// (U+0130 İ becomes "i̇", Go gives "i") and the final-sigma rule (Σ at the
// end of a word becomes ς).
func rustLower(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	for i, r := range s {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if casedBefore(s[:i]) && !casedAfter(s[i+len("Σ"):]) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// casedBefore / casedAfter: the nearest character that is not
// case-ignorable, before / after the position, is cased.
func casedBefore(s string) bool {
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if !caseIgnorable(r) {
			return cased(r)
		}
		s = s[:len(s)-size]
	}
	return false
}

func casedAfter(s string) bool {
	for _, r := range s {
		if !caseIgnorable(r) {
			return cased(r)
		}
	}
	return false
}

func cased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true // Word_Break MidLetter, MidNumLet, Single_Quote
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// parseI64 is Rust's str::parse::<i64> (optional sign, ASCII digits). It
// checks the syntax first so the common non-numeric case does not allocate
// a strconv error.
func parseI64(s string) (int64, bool) {
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-') {
		body = body[1:]
	}
	if body == "" {
		return 0, false
	}
	for i := 0; i < len(body); i++ {
		if body[i] < '0' || body[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// asciiEqualFold is strings.EqualFold restricted to ASCII letters.
func asciiEqualFold(s, word string) bool {
	if len(s) != len(word) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != word[i] {
			return false
		}
	}
	return true
}

// targetElementString is the string SC keys a target array element (or an
// object target's value) by: a string as it is, anything else as
// serde_json's compact text. The reference runner hands the rule set to SC
// through JavaScript (JSON.parse, JSON.stringify), so a number reaches serde
// as JavaScript prints it: 9.0 as 9, 1e21 as 1e+21 (which serde reads as a
// float and prints as 1e21).
func targetElementString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return string(appendJSONValue(nil, v, appendTargetNumber))
}

// appendTargetNumber writes a rule-set number as it reaches SC: JavaScript's
// text of it, which serde_json reads as an integer when it is one that fits
// 64 bits and prints unchanged, and otherwise reads as a float and prints
// in its shortest form. JSON.stringify writes a number too large for a
// double as null.
func appendTargetNumber(dst []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(dst, "null"...)
	}
	js := jsNumberString(f)
	if isIntegerLiteral(js) {
		if _, err := strconv.ParseInt(js, 10, 64); err == nil {
			return append(dst, js...)
		}
		if _, err := strconv.ParseUint(js, 10, 64); err == nil {
			return append(dst, js...)
		}
	}
	return appendSerdeFloat(dst, f)
}

func isIntegerLiteral(s string) bool {
	if strings.HasPrefix(s, "-") {
		s = s[1:]
	}
	return s != "" && isDigits(s)
}

// appendSerdeFloat prints a finite float as serde_json does (the ryu
// crate's layout): plain decimals with a fraction (integral values end in
// ".0") while the decimal exponent is small, else d.ddde±x.
func appendSerdeFloat(dst []byte, f float64) []byte {
	if f == 0 {
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±xx
	if s[0] == '-' {
		dst = append(dst, '-')
		s = s[1:]
	}
	mant, expText, _ := strings.Cut(s, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expText)
	n := len(digits)
	point := exp + 1 // the decimal point sits after this many digits
	switch {
	case point >= n && point <= 16:
		dst = append(dst, digits...)
		for i := n; i < point; i++ {
			dst = append(dst, '0')
		}
		return append(dst, '.', '0')
	case point > 0 && point <= 16:
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		return append(dst, digits[point:]...)
	case point > -5 && point <= 0:
		dst = append(dst, '0', '.')
		for i := point; i < 0; i++ {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
	dst = append(dst, digits[0])
	if n > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	return strconv.AppendInt(dst, int64(point-1), 10)
}
