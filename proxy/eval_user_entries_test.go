package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// A user whose strings and arrays, read as objects the way Statsig's SDK
// reads them, stand for more entries than evalcore builds is refused with a
// 400 that says why, under any limits.max_user_bytes (the default, 64 KiB,
// cannot hold that many).
func TestEvalUserTooManyEntries(t *testing.T) {
	s := &evalService{maxUser: 1 << 20}
	body := `{"gateName":"g","user":{"userID":"u","custom":"` + strings.Repeat("x", 1<<17) + `"}}`
	_, _, aerr := s.decode([]byte(body))
	if aerr == nil || aerr.status != http.StatusBadRequest || !strings.Contains(aerr.reason, "invalid user") ||
		!strings.Contains(aerr.reason, "more than 65536 entries") {
		t.Fatalf("decode: %v, want a 400 for too many entries", aerr)
	}
	if _, _, aerr := s.decode([]byte(`{"gateName":"g","user":{"userID":"u","custom":"` + strings.Repeat("x", 1<<15) + `"}}`)); aerr != nil {
		t.Fatalf("decode of a user within the bound: %v", aerr)
	}
}
