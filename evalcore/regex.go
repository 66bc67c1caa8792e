package evalcore

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// str_matches patterns are compiled by SC with fancy-regex, which hands
// everything but its own extensions (look-around, back-references, atomic
// groups, possessive quantifiers, \K, \G, \h ...) to Rust's regex crate. The
// two differ from Go's RE2 in ways that change answers: \d, \w, \s and \b are
// Unicode-aware, {,n} is a quantifier, \Q and a few other escapes are
// errors. translateRustRegex rewrites a pattern so that Go's engines read it
// the way SC does: an RE2 form (when RE2 can run it) and a backtracking form
// for regexp2.

// rustRegex matches with RE2 where it can and regexp2 where it must. A
// pattern with word boundaries runs on RE2 for ASCII input (where Unicode
// and ASCII word characters agree) and on the backtracking form otherwise.
type rustRegex struct {
	re2 *regexp.Regexp
	bt  *regexp2.Regexp
}

func (m *rustRegex) MatchString(s string) bool {
	if m.re2 != nil && (m.bt == nil || isASCII(s)) {
		return m.re2.MatchString(s)
	}
	if m.bt == nil {
		return false
	}
	ok, err := m.bt.MatchString(s)
	return ok && err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// compileRustRegex compiles a str_matches pattern; nil when SC could not
// compile it (the condition then never matches). backtrack false leaves out
// the regexp2 engine.
func compileRustRegex(pattern string, backtrack bool) matcher {
	tr, ok := translateRustRegex(pattern)
	if !ok {
		return nil
	}
	var re *regexp.Regexp
	err := errBacktrackOnly
	if !tr.btOnly {
		re, err = regexp.Compile(tr.re2)
	}
	if err == nil && !tr.boundary {
		return re
	}
	if !backtrack {
		if err != nil {
			return nil
		}
		return re // ASCII word boundaries: the best RE2 can do
	}
	m := &rustRegex{}
	if err == nil {
		m.re2 = re
	}
	if bt, err := regexp2.Compile(tr.bt, regexp2.RE2); err == nil {
		bt.MatchTimeout = regexTimeout
		m.bt = bt
	}
	if m.re2 == nil && m.bt == nil {
		return nil
	}
	return m
}

var errBacktrackOnly = errors.New("backtracking only")

// regexForms is a translated pattern.
type regexForms struct {
	re2, bt  string
	boundary bool // uses \b or \B (Unicode word boundaries)
	btOnly   bool // needs what RE2 lacks (\<, \>, \Z, \G)
}

// Unicode class bodies (without brackets) for RE2 and for regexp2, which
// knows Go's property tables by name where RE2 does not.
type classBodies struct {
	wordRE2, wordBT   string // Rust \w: Alphabetic, M, Nd, Pc, Join_Control
	spaceRE2, spaceBT string // Rust \s: White_Space
}

var unicodeClasses = sync.OnceValue(func() classBodies {
	return classBodies{
		wordRE2:  `\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}` + tableRanges(unicode.Other_Alphabetic) + tableRanges(unicode.Join_Control),
		wordBT:   `\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\p{Other_Alphabetic}\p{Join_Control}`,
		spaceRE2: tableRanges(unicode.White_Space),
		spaceBT:  `\p{White_Space}`,
	}
})

// tableRanges writes a range table as class ranges (\x{a}-\x{b}...).
func tableRanges(t *unicode.RangeTable) string {
	var b strings.Builder
	add := func(lo, hi, stride uint32) {
		if stride == 1 {
			b.WriteString(hexRune(rune(lo)))
			if hi > lo {
				b.WriteByte('-')
				b.WriteString(hexRune(rune(hi)))
			}
			return
		}
		for r := lo; r <= hi; r += stride {
			b.WriteString(hexRune(rune(r)))
		}
	}
	for _, r := range t.R16 {
		add(uint32(r.Lo), uint32(r.Hi), uint32(r.Stride))
	}
	for _, r := range t.R32 {
		add(r.Lo, r.Hi, r.Stride)
	}
	return b.String()
}

func hexRune(r rune) string { return `\x{` + strconv.FormatInt(int64(r), 16) + `}` }

// property resolves a \p{name} the way Rust's regex does (loose matching:
// case, spaces, '_' and '-' ignored; gc= / sc= prefixes; long category
// names; a few binary properties) to class bodies for RE2 and regexp2.
func property(name string) (re2, bt string, ok bool) {
	norm := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r == ' ' || r == '_' || r == '-' {
				continue
			}
			b.WriteRune(unicode.ToLower(r))
		}
		return b.String()
	}
	n := norm(name)
	if k, v, found := strings.Cut(n, "="); found {
		switch k {
		case "gc", "generalcategory", "sc", "script", "scx", "scriptextensions":
			n = v
		default:
			return "", "", false
		}
	}
	if alias, ok := longCategories[n]; ok {
		n = norm(alias)
	}
	switch n {
	case "any":
		return `\x{0}-\x{10ffff}`, `\x{0}-\x{10ffff}`, true
	case "ascii":
		return `\x{0}-\x{7f}`, `\x{0}-\x{7f}`, true
	case "alphabetic", "alpha":
		return `\p{L}\p{Nl}` + tableRanges(unicode.Other_Alphabetic), `\p{L}\p{Nl}\p{Other_Alphabetic}`, true
	case "whitespace", "wspace", "space":
		c := unicodeClasses()
		return c.spaceRE2, c.spaceBT, true
	case "uppercase", "upper":
		return `\p{Lu}` + tableRanges(unicode.Other_Uppercase), `\p{Lu}\p{Other_Uppercase}`, true
	case "lowercase", "lower":
		return `\p{Ll}` + tableRanges(unicode.Other_Lowercase), `\p{Ll}\p{Other_Lowercase}`, true
	}
	for _, m := range []map[string]*unicode.RangeTable{unicode.Categories, unicode.Scripts} {
		for k := range m {
			if norm(k) == n {
				return `\p{` + k + `}`, `\p{` + k + `}`, true
			}
		}
	}
	return "", "", false
}

// longCategories are the long general-category names Rust accepts.
var longCategories = map[string]string{
	"letter": "L", "casedletter": "LC", "uppercaseletter": "Lu", "lowercaseletter": "Ll", "titlecaseletter": "Lt",
	"modifierletter": "Lm", "otherletter": "Lo", "mark": "M", "nonspacingmark": "Mn", "spacingmark": "Mc",
	"enclosingmark": "Me", "number": "N", "decimalnumber": "Nd", "digit": "Nd", "letternumber": "Nl",
	"othernumber": "No", "punctuation": "P", "connectorpunctuation": "Pc", "dashpunctuation": "Pd",
	"openpunctuation": "Ps", "closepunctuation": "Pe", "initialpunctuation": "Pi", "finalpunctuation": "Pf",
	"otherpunctuation": "Po", "symbol": "S", "mathsymbol": "Sm", "currencysymbol": "Sc", "modifiersymbol": "Sk",
	"othersymbol": "So", "separator": "Z", "spaceseparator": "Zs", "lineseparator": "Zl",
	"paragraphseparator": "Zp", "other": "C", "control": "Cc", "format": "Cf", "surrogate": "Cs",
	"privateuse": "Co", "unassigned": "Cn",
}

// regexTranslator walks a pattern once, writing both forms.
type regexTranslator struct {
	p        string
	i        int
	re2, bt  strings.Builder
	boundary bool
	// start offsets (re2, bt) of the last atom, and of open groups, so a
	// possessive quantifier can wrap its atom in an atomic group
	atomRE2, atomBT int
	groups          [][2]int
	xmode           bool // (?x) seen: '#' starts a comment
	btOnly          bool
}

// translateRustRegex rewrites a fancy-regex pattern; ok is false when SC
// would reject it.
func translateRustRegex(p string) (regexForms, bool) {
	t := &regexTranslator{p: p, atomRE2: -1, atomBT: -1}
	for t.i < len(p) {
		if !t.step() {
			return regexForms{}, false
		}
	}
	return regexForms{re2: t.re2.String(), bt: t.bt.String(), boundary: t.boundary, btOnly: t.btOnly}, true
}

func (t *regexTranslator) both(s string) {
	t.re2.WriteString(s)
	t.bt.WriteString(s)
}

func (t *regexTranslator) markAtom() { t.atomRE2, t.atomBT = t.re2.Len(), t.bt.Len() }

func (t *regexTranslator) step() bool {
	p := t.p
	c := p[t.i]
	switch c {
	case '\\':
		t.markAtom()
		return t.escape()
	case '[':
		t.markAtom()
		return t.class()
	case '(':
		return t.group()
	case ')':
		t.i++
		t.both(")")
		if n := len(t.groups); n > 0 {
			t.atomRE2, t.atomBT = t.groups[n-1][0], t.groups[n-1][1]
			t.groups = t.groups[:n-1]
		}
		return true
	case '*', '+', '?':
		t.i++
		t.both(string(c))
		return t.quantifierSuffix()
	case '{':
		if q, n, ok := repetition(p[t.i:]); ok {
			t.i += n
			t.both(q)
			return t.quantifierSuffix()
		}
		t.markAtom()
		t.i++
		t.both(`\{`)
		return true
	}
	if t.xmode && c == '#' {
		// an extended-mode comment, to the end of the line
		end := strings.IndexByte(p[t.i:], '\n')
		if end < 0 {
			end = len(p) - t.i
		}
		t.both(p[t.i : t.i+end])
		t.i += end
		return true
	}
	r, size := utf8.DecodeRuneInString(p[t.i:])
	if c != '^' && c != '$' && c != '|' {
		t.markAtom()
	}
	t.i += size
	t.both(string(r))
	return true
}

// quantifierSuffix handles a lazy '?' or a possessive '+' after a quantifier;
// a possessive one becomes an atomic group around the atom (RE2 has none, so
// only the backtracking form can run it).
func (t *regexTranslator) quantifierSuffix() bool {
	if t.i >= len(t.p) {
		return true
	}
	switch t.p[t.i] {
	case '?':
		t.i++
		t.both("?")
	case '+':
		t.i++
		if t.atomRE2 < 0 {
			return false
		}
		for _, f := range []struct {
			b     *strings.Builder
			start int
		}{{&t.re2, t.atomRE2}, {&t.bt, t.atomBT}} {
			s := f.b.String()
			f.b.Reset()
			f.b.WriteString(s[:f.start])
			f.b.WriteString("(?>")
			f.b.WriteString(s[f.start:])
			f.b.WriteString(")")
		}
	}
	return true
}

// repetition parses {n}, {n,}, {n,m} or {,m} (Rust reads the last as
// {0,m}) and returns it in RE2's spelling.
func repetition(s string) (string, int, bool) {
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, false
	}
	body := s[1:end]
	lo, hi, comma := strings.Cut(body, ",")
	lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
	if (lo != "" && !isDigits(lo)) || (hi != "" && !isDigits(hi)) || (lo == "" && (!comma || hi == "")) {
		return "", 0, false
	}
	if lo == "" {
		lo = "0"
	}
	if !comma {
		return "{" + lo + "}", end + 1, true
	}
	return "{" + lo + "," + hi + "}", end + 1, true
}

func (t *regexTranslator) group() bool {
	p := t.p
	t.groups = append(t.groups, [2]int{t.re2.Len(), t.bt.Len()})
	if !strings.HasPrefix(p[t.i:], "(?") {
		t.i++
		t.both("(")
		return true
	}
	rest := p[t.i+2:]
	switch {
	case strings.HasPrefix(rest, "#"):
		// a comment: fancy-regex skips it, and so can both engines
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return false
		}
		t.groups = t.groups[:len(t.groups)-1]
		t.i += 2 + end + 1
		return true
	case strings.HasPrefix(rest, "P="):
		// a Python-style named back-reference
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return false
		}
		t.groups = t.groups[:len(t.groups)-1]
		t.markAtom()
		t.btOnly = true
		t.bt.WriteString(`\k<` + rest[2:end] + `>`)
		t.i += 2 + end + 1
		return true
	case rest == "", strings.IndexByte(":=!<>(", rest[0]) >= 0, strings.HasPrefix(rest, "P<"):
		t.i++
		t.both("(")
		return true
	}
	// flags: (?flags) or (?flags:...)
	j := 0
	for j < len(rest) && rest[j] != ')' && rest[j] != ':' {
		j++
	}
	if j == len(rest) {
		return false
	}
	flags := rest[:j]
	var out strings.Builder
	neg := false
	for _, f := range flags {
		switch f {
		case '-':
			neg = true
			out.WriteRune(f)
		case 'u':
			if neg {
				return false // SC rejects patterns that turn Unicode off
			}
		case 'x':
			if !neg {
				t.xmode = true
			}
			out.WriteRune(f)
		case 'i', 'm', 's', 'U', 'R':
			out.WriteRune(f)
		default:
			return false
		}
	}
	fl := out.String()
	if fl == "-" {
		return false // "(?-)": a negation with no flag
	}
	fl = strings.TrimSuffix(fl, "-")
	t.i += 2 + j + 1
	switch {
	case rest[j] == ':':
		t.both("(?" + fl + ":")
	case fl != "":
		t.both("(?" + fl + ")")
		t.groups = t.groups[:len(t.groups)-1]
	default:
		t.groups = t.groups[:len(t.groups)-1]
	}
	return true
}

// escape handles a backslash sequence outside a class.
func (t *regexTranslator) escape() bool {
	p := t.p
	if t.i+1 >= len(p) {
		return false
	}
	c := p[t.i+1]
	wordBT := "[" + unicodeClasses().wordBT + "]"
	switch c {
	case 'd', 'D', 'w', 'W', 's', 'S', 'h', 'H':
		t.i += 2
		re2, bt := perlClass(c, true)
		t.re2.WriteString(re2)
		t.bt.WriteString(bt)
		return true
	case 'b', 'B':
		t.i += 2
		t.boundary = true
		t.re2.WriteString(`\` + string(c))
		if c == 'b' {
			t.bt.WriteString(`(?:(?<=` + wordBT + `)(?!` + wordBT + `)|(?<!` + wordBT + `)(?=` + wordBT + `))`)
		} else {
			t.bt.WriteString(`(?:(?<=` + wordBT + `)(?=` + wordBT + `)|(?<!` + wordBT + `)(?!` + wordBT + `))`)
		}
		return true
	case '<', '>':
		t.i += 2
		t.btOnly = true
		if c == '<' {
			t.bt.WriteString(`(?<!` + wordBT + `)(?=` + wordBT + `)`)
		} else {
			t.bt.WriteString(`(?<=` + wordBT + `)(?!` + wordBT + `)`)
		}
		return true
	case 'K':
		// resets the reported match start, which a yes/no match ignores
		t.i += 2
		return true
	case 'A', 'z':
		t.i += 2
		t.both(`\` + string(c))
		return true
	case 'Z', 'G':
		t.i += 2
		t.btOnly = true
		t.bt.WriteString(`\` + string(c))
		return true
	case 'p', 'P':
		re2, bt, n, ok := t.propertyEscape(t.i, false)
		if !ok {
			return false
		}
		t.i += n
		t.re2.WriteString(re2)
		t.bt.WriteString(bt)
		return true
	case 'k':
		end := strings.IndexByte(p[t.i:], '>')
		if end < 0 || t.i+2 >= len(p) || p[t.i+2] != '<' {
			return false
		}
		t.both(p[t.i : t.i+end+1])
		t.i += end + 1
		return true
	}
	if c >= '1' && c <= '9' {
		j := t.i + 1
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		t.both(p[t.i:j])
		t.i = j
		return true
	}
	r, n, ok := literalEscape(p[t.i:])
	if !ok {
		return false
	}
	t.i += n
	t.both(literal(r))
	return true
}

// perlClass is \d \w \s \h (upper case: negated) in Rust's Unicode sense,
// as a bracketed class for RE2 and regexp2, or (bracket false, lower case
// only) as the bare class body for use inside a class.
func perlClass(c byte, bracket bool) (string, string) {
	cls := unicodeClasses()
	var re2, bt string
	switch c | 0x20 {
	case 'd':
		re2, bt = `\p{Nd}`, `\p{Nd}`
	case 'w':
		re2, bt = cls.wordRE2, cls.wordBT
	case 's':
		re2, bt = cls.spaceRE2, cls.spaceBT
	case 'h':
		re2, bt = `0-9A-Fa-f`, `0-9A-Fa-f`
	}
	if !bracket {
		return re2, bt
	}
	if c >= 'A' && c <= 'Z' {
		return "[^" + re2 + "]", "[^" + bt + "]"
	}
	return "[" + re2 + "]", "[" + bt + "]"
}

// propertyEscape reads \pX, \p{name} or \p{^name} at p[i:], returning bodies
// or bracketed classes (inClass: bodies for a non-negated property).
func (t *regexTranslator) propertyEscape(i int, inClass bool) (string, string, int, bool) {
	p := t.p
	neg := p[i+1] == 'P'
	var name string
	n := 0
	switch {
	case i+2 < len(p) && p[i+2] == '{':
		end := strings.IndexByte(p[i:], '}')
		if end < 0 {
			return "", "", 0, false
		}
		name, n = p[i+3:i+end], end+1
	case i+2 < len(p):
		r, size := utf8.DecodeRuneInString(p[i+2:])
		name, n = string(r), 2+size
	default:
		return "", "", 0, false
	}
	re2, bt, ok := property(name)
	if !ok {
		return "", "", 0, false
	}
	if inClass {
		if neg {
			// a negated property inside a class has no plain body; keep
			// it only when it is a single category or script
			if strings.HasPrefix(re2, `\p{`) && strings.Count(re2, `\p{`) == 1 && !strings.Contains(re2, `\x{`) {
				return `\P` + re2[2:], `\P` + bt[2:], n, true
			}
			return "", "", 0, false
		}
		return re2, bt, n, true
	}
	if neg {
		return "[^" + re2 + "]", "[^" + bt + "]", n, true
	}
	return "[" + re2 + "]", "[" + bt + "]", n, true
}

// literalEscape decodes an escape that stands for one character: \x..,
// \u.., \U.., control escapes and escaped punctuation. ok is false for
// escapes Rust rejects (\Q, \E, \R, \N, \X, \c, unknown letters).
func literalEscape(s string) (rune, int, bool) {
	c := s[1]
	switch c {
	case 'a':
		return 7, 2, true
	case 'f':
		return '\f', 2, true
	case 't':
		return '\t', 2, true
	case 'n':
		return '\n', 2, true
	case 'r':
		return '\r', 2, true
	case 'v':
		return '\v', 2, true
	case 'e':
		return 0x1b, 2, true
	case 'x', 'u', 'U':
		digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if len(s) > 2 && s[2] == '{' {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return 0, 0, false
			}
			v, err := strconv.ParseUint(s[3:end], 16, 32)
			if err != nil || v > unicode.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
				return 0, 0, false
			}
			return rune(v), end + 1, true
		}
		if len(s) < 2+digits {
			return 0, 0, false
		}
		v, err := strconv.ParseUint(s[2:2+digits], 16, 32)
		if err != nil || v > unicode.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
			return 0, 0, false
		}
		return rune(v), 2 + digits, true
	}
	if c < utf8.RuneSelf && !isASCIIAlnum(c) && c > ' ' && c != 0x7f {
		return rune(c), 2, true // escaped punctuation
	}
	return 0, 0, false
}

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// literal writes one character so that both engines read it literally,
// inside or outside a class and in (?x) mode.
func literal(r rune) string {
	if r < utf8.RuneSelf && isASCIIAlnum(byte(r)) {
		return string(r)
	}
	if r > ' ' && r < 0x7f {
		return `\` + string(r)
	}
	return hexRune(r)
}

// class translates a bracketed class: Perl and property escapes become
// Unicode ranges; a range with a class at either end, which Rust rejects,
// makes the pattern invalid. Nested classes and set operations (rare) keep
// Go's reading.
func (t *regexTranslator) class() bool {
	p := t.p
	t.i++ // '['
	t.both("[")
	if t.i < len(p) && p[t.i] == '^' {
		t.i++
		t.both("^")
	}
	// rangeFollows: a '-' that makes a range follows at p[i]
	rangeFollows := func(i int) bool { return i+1 < len(p) && p[i] == '-' && p[i+1] != ']' }
	isClassEscape := func(i int) bool {
		return i+1 < len(p) && p[i] == '\\' && strings.IndexByte("dDwWsShHpP", p[i+1]) >= 0
	}
	for first := true; t.i < len(p); first = false {
		c := p[t.i]
		switch {
		case c == ']' && !first:
			t.i++
			t.both("]")
			return true
		case c == '[' && strings.HasPrefix(p[t.i:], "[:"):
			end := strings.Index(p[t.i:], ":]")
			if end < 0 {
				return false
			}
			t.both(p[t.i : t.i+end+2])
			t.i += end + 2
		case c == '-' && !first && isClassEscape(t.i+1):
			return false // a range ending in a class
		case isClassEscape(t.i):
			e := p[t.i+1]
			switch {
			case e == 'p' || e == 'P':
				re2, bt, n, ok := t.propertyEscape(t.i, true)
				if !ok {
					return false
				}
				t.re2.WriteString(re2)
				t.bt.WriteString(bt)
				t.i += n
			case e == 'D':
				t.both(`\P{Nd}`)
				t.i += 2
			case e == 'W' || e == 'S' || e == 'H':
				// no Unicode form inside a class: keep the ASCII one
				t.both(`\` + string(e))
				t.i += 2
			default:
				re2, bt := perlClass(e, false)
				t.re2.WriteString(re2)
				t.bt.WriteString(bt)
				t.i += 2
			}
			if rangeFollows(t.i) {
				return false // a range starting with a class
			}
		case c == '\\':
			if t.i+1 >= len(p) {
				return false
			}
			r, n, ok := literalEscape(p[t.i:])
			if !ok {
				return false
			}
			t.both(literal(r))
			t.i += n
		case c == '-':
			t.both("-")
			t.i++
		default:
			r, size := utf8.DecodeRuneInString(p[t.i:])
			t.both(literal(r))
			t.i += size
		}
	}
	return false // unterminated
}
