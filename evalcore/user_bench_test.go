package evalcore

import "testing"

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
