package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestRunOnExample runs both engines briefly over the bundled example rule set and checks that
// each reports a rate.
func TestRunOnExample(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.jsonl")
	lines := `{"userID":"u1","email":"a@example.com","country":"US"}
{"userID":"u2","ip":"1.1.1.1","appVersion":"2.1.0","userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)"}
{"customIDs":{"stableID":"s-1"},"custom":{"level":3}}
`
	if err := os.WriteFile(users, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run([]string{"-dcs", "../../examples/example-rules.json", "-users", users, "-sdk", "-duration", "20ms", "-rounds", "2", "-reparse"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`5 gates, 2 configs, 1 layers; 3 users`, `sigedge evalcore: [0-9.]+[kM]? evaluations/s`,
		`go-sdk v1.35.1: +[0-9.]+[kM]? evaluations/s`, `ratio sigedge/go-sdk: [0-9.]+x`, `per CPU-second`} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("output lacks %q:\n%s", re, out.String())
		}
	}
}
