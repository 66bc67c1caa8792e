package evalcore

import (
	"strings"
	"testing"
)

// benchUsers are the shapes the HTTP API sees: an ID and a country, and a
// fuller user with every kind of field.
var benchUsers = []struct{ name, raw string }{
	{"small", `{"userID":"u123","country":"US"}`},
	{"full", `{"userID":"u123","email":"a.b@example.com","ip":"1.2.3.4",` +
		`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",` +
		`"country":"US","locale":"en_US","appVersion":"1.2.3","customIDs":{"companyID":"c9","stableID":"s-1"},` +
		`"custom":{"plan":"pro","level":9,"tags":["a","b"],"beta":true},"privateAttributes":{"secret":"x"},` +
		`"statsigEnvironment":{"tier":"production"}}`},
}

// BenchmarkParseUser: go test -run '^$' -bench BenchmarkParseUser -benchmem ./evalcore
func BenchmarkParseUser(b *testing.B) {
	for _, c := range benchUsers {
		b.Run(c.name, func(b *testing.B) {
			raw := []byte(c.raw)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseUser(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bigUsers are users whose custom, privateAttributes or customIDs are not
// objects but big strings or arrays, which ParseUser expands into one entry
// per UTF-16 code unit or element (the HTTP API takes them from anyone).
func bigUsers() []struct {
	name    string
	raw     []byte
	entries int
} {
	str := func(field string, n int) []byte {
		s := strings.Repeat("abcdefghij", n/10+1)[:n]
		return []byte(`{"userID":"u","` + field + `":"` + s + `"}`)
	}
	arr := func(field, elem string, n int) []byte {
		var b strings.Builder
		b.WriteString(`{"userID":"u","` + field + `":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(elem)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	const mb = maxUserBytes - 64 // the largest users ParseUser takes
	return []struct {
		name    string
		raw     []byte
		entries int
	}{
		{"custom_string_1KB", str("custom", 1<<10), 1 << 10},
		{"custom_string_64KB", str("custom", 64<<10), 64 << 10},
		{"custom_string_1MB", str("custom", mb), mb},
		{"private_string_1MB", str("privateAttributes", mb), mb},
		{"customIDs_array_64KB", arr("customIDs", "7", 32<<10), 32 << 10},
		{"customIDs_array_64Ki_entries", arr("customIDs", "7", maxExpandedEntries), maxExpandedEntries},
		{"customIDs_array_1MB", arr("customIDs", "7", mb/2), mb / 2},
		{"custom_array_1MB", arr("custom", `"x"`, mb/4), mb / 4},
	}
}

// BenchmarkParseUserBig: ns and bytes per op over entries is the cost of one
// expanded entry. The users of more than maxExpandedEntries entries measure
// the cost of refusing them.
//
//	go test -run '^$' -bench BenchmarkParseUserBig -benchmem ./evalcore
func BenchmarkParseUserBig(b *testing.B) {
	for _, c := range bigUsers() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.raw)))
			for b.Loop() {
				if _, err := ParseUser(c.raw); (err != nil) != (c.entries > maxExpandedEntries) {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.entries), "ns/entry")
		})
	}
}
