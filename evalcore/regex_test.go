package evalcore

import "testing"

// TestRustRegex: str_matches patterns read the way SC's fancy-regex reads
// them (answers taken from the reference SDK; the full matrix is the
// regex_fancy regression case).
func TestRustRegex(t *testing.T) {
	for _, tc := range []struct {
		pattern, input string
		want           bool
	}{
		{`^\d+$`, "١٢٣", true}, // Unicode digits
		{`^\d+$`, "123", true},
		{`^\w+$`, "straße", true}, // Unicode word characters
		{`^\w+$`, "Ⓐ", true},      // Other_Alphabetic
		{`^\w+$`, "a b", false},
		{`^\S+$`, "a\u00a0b", false}, // NBSP is white space
		{`\bvip\b`, "vip user", true},
		{`\bvip\b`, "üvip", false}, // ü is a word character: no boundary
		{`\Bvip`, "üvip", true},
		{`a{,2}b`, "xb", true}, // {,n} is {0,n}
		{`a++`, "aa", true},    // possessive
		{`a++a`, "aaa", false},
		{`(?>a+)a`, "aaa", false}, // atomic
		{`(a)\1`, "aa", true},     // back-reference
		{`(?P<n>a)(?P=n)`, "aa", true},
		{`(?<=x)user`, "xuser", true}, // look-behind
		{`\h+`, "ff", true},           // hex digit
		{`^\h+$`, "fg", false},
		{`\K`, "", true},
		{`(?#note)a`, "a", true},
		{`\Qa.b\E`, "a.b", false}, // not Rust syntax: never matches
		{`\R`, "R", false},
		{`(?-u)\w`, "a", false},
		{`(?-)a`, "a", false},
		{`[\d-z]`, "5", false}, // a range ending at a class
		{`\p{^Lu}`, "a", false},
		{`\p{Greek}+`, "οδος", true},
		{`\p{Letter}`, "x", true},
		{`\p{Alphabetic}`, "Ⓐ", true},
		{`\u0041`, "A", true},
		{`\x{1F600}`, "😀", true},
		{`(?i)οδος`, "ΟΔΟΣ", true},
		{`[`, "[", false},
		{`a$`, "a\n", false},
	} {
		m := compileRustRegex(tc.pattern, true)
		got := m != nil && m.MatchString(tc.input)
		if got != tc.want {
			t.Errorf("%q on %q: got %v, want %v", tc.pattern, tc.input, got, tc.want)
		}
	}
}

// TestLowerString: case-insensitive operators lower-case like Rust.
func TestLowerString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ABC", "abc"},
		{"abc", "abc"},
		{"İstanbul", "i\u0307stanbul"},
		{"ΟΔΟΣ", "οδος"},
		{"ΟΔΟΣ.", "οδος."},
		{"ΣΑ", "σα"},
		{"Σ", "σ"},
		{"AΣ1", "aς1"},
		{"ΑΣ'Β", "ασ'β"},
		{"Straße", "straße"},
		{"ǅ", "ǆ"},
	} {
		if got := lowerString(tc.in); got != tc.want {
			t.Errorf("lowerString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
