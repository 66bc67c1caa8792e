package evalcore

import (
	"bytes"
	"testing"
)

// TestAppendClientInitializeResponse: building an answer after a prefix, in a
// buffer that held another (longer or shorter) answer before, gives the prefix
// then exactly ClientInitializeResponse's answer, for every regression case
// with initialize records (nesting-limit failures and sinceTime answers too).
func TestAppendClientInitializeResponse(t *testing.T) {
	checked := 0
	for _, f := range regressionFiles() {
		c := readRegressionCase(t, f)
		if len(c.Initialize) == 0 {
			continue
		}
		rs, err := Compile(c.RuleSet, CompileOptions{})
		if err != nil {
			continue // cases the reference refused too
		}
		e := NewEvaluator(rs, EvaluatorOptions{})
		recycled := make([]byte, 0, 64) // grows and is reused across users
		for i, raw := range c.Users {
			u, err := ParseUser(raw)
			if err != nil {
				continue
			}
			for _, opts := range []InitOptions{
				{Hash: HashDJB2, ClientKey: c.ClientKey},
				{Hash: HashNone},
				{SinceTime: 1 << 62},
			} {
				want, err := e.ClientInitializeResponse(u, opts)
				if err != nil {
					t.Fatalf("%s user %d: %v", f, i, err)
				}
				prefix := []byte("prefix:")
				recycled = append(recycled[:0], prefix...)
				got, err := e.AppendClientInitializeResponse(recycled, u, opts)
				if err != nil {
					t.Fatalf("%s user %d: %v", f, i, err)
				}
				if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
					t.Fatalf("%s user %d %+v: appended answer differs:\n got %.300s\nwant %.300s", f, i, opts, got, want)
				}
				recycled = got
				checked++
			}
		}
	}
	if checked == 0 {
		t.Skip("no regression case with initialize records")
	}
}
