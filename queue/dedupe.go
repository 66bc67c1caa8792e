package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// exposureKey identifies one exposure for de-duplication: a SHA-256 of its parts, so memory per
// remembered exposure is fixed whatever the size of the user.
type exposureKey [sha256.Size]byte

// dedupe remembers exposures for a fixed window from their first sighting (re-sightings do not extend
// it, so a user exposed every few seconds is still logged once per window, like the SDKs do).
type dedupe struct {
	seen *expirable.LRU[exposureKey, struct{}]
}

func newDedupe(maxKeys int, window time.Duration) *dedupe {
	// The LRU's cleanup goroutine lives as long as the process; there is one per publisher.
	return &dedupe{seen: expirable.NewLRU[exposureKey, struct{}](maxKeys, nil, window)}
}

// exposure is the part of an exposure event its identity is made of.
type exposure struct {
	EventName string `json:"eventName"`
	User      struct {
		UserID    json.RawMessage            `json:"userID"`
		CustomIDs map[string]json.RawMessage `json:"customIDs"`
	} `json:"user"`
	Metadata        map[string]json.RawMessage `json:"metadata"`
	StatsigMetadata struct {
		StableID json.RawMessage `json:"stableID"`
	} `json:"statsigMetadata"`
}

// exposureMeta are the metadata fields that make two exposures the same: the spec, the rule, and the
// value the user got (gate value, config pass, layer parameter and its experiment).
var exposureMeta = map[string][]string{
	"statsig::gate_exposure":   {"gate", "ruleID", "gateValue"},
	"statsig::config_exposure": {"config", "ruleID", "rulePassed"},
	"statsig::layer_exposure":  {"config", "ruleID", "parameterName", "allocatedExperiment", "isExplicitParameter"},
}

// exposureNames are the quoted event names, for a cheap pre-check before decoding an event.
var exposureNames = [][]byte{
	[]byte(`"statsig::gate_exposure"`), []byte(`"statsig::config_exposure"`), []byte(`"statsig::layer_exposure"`),
}

// keyOf returns the identity of an exposure event, or false for any other event (custom events are
// never de-duplicated) and for exposures of users without any unit ID, which cannot be told apart.
func keyOf(sdkKey string, batchStableID []byte, event []byte) (exposureKey, bool) {
	maybe := false
	for _, n := range exposureNames {
		if bytes.Contains(event, n) {
			maybe = true
			break
		}
	}
	if !maybe {
		return exposureKey{}, false
	}
	var e exposure
	if json.Unmarshal(event, &e) != nil {
		return exposureKey{}, false
	}
	fields, ok := exposureMeta[e.EventName]
	if !ok {
		return exposureKey{}, false
	}
	h := sha256.New()
	part := func(b []byte) {
		// Length-prefixed, so that no two different tuples hash the same input.
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
		h.Write(n[:])
		h.Write(b)
	}
	part([]byte(sdkKey))
	part([]byte(e.EventName))
	units := 0
	if id := bytes.TrimSpace(e.User.UserID); len(id) > 0 && string(id) != "null" && string(id) != `""` {
		units++
	}
	part(e.User.UserID)
	ids := make([]string, 0, len(e.User.CustomIDs))
	for k := range e.User.CustomIDs {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	for _, k := range ids {
		units++
		part([]byte(k))
		part(e.User.CustomIDs[k])
	}
	stable := e.StatsigMetadata.StableID
	if len(stable) == 0 {
		stable = batchStableID
	}
	if len(stable) > 0 && string(stable) != "null" {
		units++
	}
	part(stable)
	if units == 0 {
		return exposureKey{}, false
	}
	for _, f := range fields {
		part([]byte(f))
		part(e.Metadata[f])
	}
	var k exposureKey
	h.Sum(k[:0])
	return k, true
}

// batchStableID is statsigMetadata.stableID of a batch (client SDKs put it there, not on events).
func batchStableID(metadata []byte) []byte {
	if len(metadata) == 0 || !bytes.Contains(metadata, []byte(`"stableID"`)) {
		return nil
	}
	var m struct {
		StableID json.RawMessage `json:"stableID"`
	}
	if json.Unmarshal(metadata, &m) != nil {
		return nil
	}
	return m.StableID
}

// filter returns the events not seen within the window (nor earlier in the same batch), the keys to
// remember once they are stored, and how many were dropped. Nothing is remembered here: a batch that
// then fails to publish must not make its own retry look like a duplicate.
func (d *dedupe) filter(sdkKey string, metadata []byte, events [][]byte) (kept [][]byte, keys []exposureKey, dropped int) {
	stable := batchStableID(metadata)
	var inBatch map[exposureKey]struct{}
	for i, ev := range events {
		k, ok := keyOf(sdkKey, stable, ev)
		if !ok {
			if kept != nil {
				kept = append(kept, ev)
			}
			continue
		}
		_, dup := inBatch[k]
		if !dup {
			dup = d.seen.Contains(k)
		}
		if dup {
			if kept == nil {
				kept = append(make([][]byte, 0, len(events)), events[:i]...)
			}
			dropped++
			continue
		}
		if inBatch == nil {
			inBatch = map[exposureKey]struct{}{}
		}
		inBatch[k] = struct{}{}
		keys = append(keys, k)
		if kept != nil {
			kept = append(kept, ev)
		}
	}
	if kept == nil {
		kept = events
	}
	return kept, keys, dropped
}

// remember records stored exposures. A key already present keeps its original expiry.
func (d *dedupe) remember(keys []exposureKey) {
	for _, k := range keys {
		if !d.seen.Contains(k) {
			d.seen.Add(k, struct{}{})
		}
	}
}
