package evalcore

import (
	"strconv"

	"github.com/sigedge/sigedge/evalcore/internal/sha256x"
)

// sessionReplayInfo is the rule set's session_replay_info, which client
// initialize responses turn into can_record_session and its companions.
type sessionReplayInfo struct {
	hasRate       bool
	rate          float64
	rateRaw       []byte
	blocked       bool
	hasBlocked    bool
	targetingGate string
	hasTargeting  bool

	eventTriggers, exposureTriggers       []replayTrigger
	hasEventTriggers, hasExposureTriggers bool
	privacy                               []storeField // SC's four known fields, as given
	hasPrivacy                            bool
}

// replayTrigger is one session_recording_{event,exposure}_triggers entry.
type replayTrigger struct {
	key     string
	values  []byte // raw JSON, nil when absent
	hasRate bool
	rate    float64
}

func compileSessionReplay(raw []byte) *sessionReplayInfo {
	m, _ := decodeObject(raw)
	sr := &sessionReplayInfo{}
	if r, ok := m["sampling_rate"]; ok && !isNull(r) {
		sr.rate, sr.hasRate = jsonNumber(r)
		if sr.hasRate {
			sr.rateRaw = compactJSON(r)
		}
	}
	if b, ok := jsonBool(m["recording_blocked"]); ok {
		sr.blocked, sr.hasBlocked = b, true
	}
	if g, ok := jsonString(m["targeting_gate"]); ok {
		sr.targetingGate, sr.hasTargeting = g, true
	}
	sr.eventTriggers, sr.hasEventTriggers = compileTriggers(m["session_recording_event_triggers"])
	sr.exposureTriggers, sr.hasExposureTriggers = compileTriggers(m["session_recording_exposure_triggers"])
	if p, err := decodeObject(m["session_recording_privacy_settings"]); err == nil {
		sr.hasPrivacy = true
		for _, k := range []string{"privacy_mode", "unmasked_elements", "masked_elements", "blocked_elements"} {
			if v, ok := p[k]; ok && !isNull(v) {
				sr.privacy = append(sr.privacy, storeField{key: k, raw: compactJSON(v)})
			}
		}
	}
	return sr
}

func compileTriggers(raw []byte) ([]replayTrigger, bool) {
	m, err := decodeObject(raw)
	if err != nil {
		return nil, false
	}
	out := []replayTrigger{}
	for _, k := range sortedKeys(m) {
		f, err := decodeObject(m[k])
		if err != nil {
			continue
		}
		t := replayTrigger{key: k}
		if v, ok := f["values"]; ok && !isNull(v) {
			t.values = compactJSON(v)
		}
		if r, ok := f["sampling_rate"]; ok && !isNull(r) {
			t.rate, t.hasRate = jsonNumber(r)
		}
		out = append(out, t)
	}
	return out, true
}

// replaySampled decides a session-recording sampling rate for the user. SC
// draws a random number per response (rate ≥ 1 always passes, ≤ 0 never);
// evalcore is deterministic instead: a hash of the user's stable or user id,
// so the odds are the same and one user gets a stable answer.
func replaySampled(u *User, rate float64, key string) bool {
	switch {
	case rate >= 1:
		return true
	case rate <= 0 || rate != rate:
		return false
	}
	unit, ok := u.CustomID("stableID")
	if !ok {
		unit = u.UserID()
	}
	p := sha256x.New("statsig::session_replay." + key)
	return float64(p.Sum64(unit)%10000) < rate*10000
}

// appendSessionReplay writes SC's session-replay fields. It runs after every
// gate, config and layer of the response and, like SC, evaluates the
// targeting gate in the response's context without resetting the result, so
// an unknown targeting gate reports whatever the last evaluation left.
func (w *gcirWriter) appendSessionReplay(b []byte, c *evalCtx, sr *sessionReplayInfo) []byte {
	can := !sr.blocked
	if sr.hasTargeting {
		c.evaluate(sr.targetingGate, typeGate)
		passes := c.st.err == nil && c.st.boolValue
		b = append(b, `,"passes_session_recording_targeting":`...)
		b = strconv.AppendBool(b, passes)
		can = can && passes
	}
	if sr.hasRate {
		b = append(b, `,"session_recording_rate":`...)
		b = append(b, sr.rateRaw...)
		can = can && replaySampled(c.u, sr.rate, "")
	}
	if sr.hasBlocked {
		b = append(b, `,"recording_blocked":`...)
		b = strconv.AppendBool(b, sr.blocked)
	}
	b = append(b, `,"can_record_session":`...)
	b = strconv.AppendBool(b, can)
	triggers := func(b []byte, field string, list []replayTrigger, hashKeys bool) []byte {
		b = append(b, field...)
		b = append(b, '{')
		for i, t := range list {
			if i > 0 {
				b = append(b, ',')
			}
			if hashKeys {
				b = w.appendName(b, t.key)
			} else {
				b = appendJSONString(b, t.key)
			}
			b = append(b, ':', '{')
			comma := false
			if t.values != nil {
				b = append(b, `"values":`...)
				b = append(b, t.values...)
				comma = true
			}
			if t.hasRate {
				if comma {
					b = append(b, ',')
				}
				b = append(b, `"passes_sampling":`...)
				b = strconv.AppendBool(b, replaySampled(c.u, t.rate, t.key))
			}
			b = append(b, '}')
		}
		return append(b, '}')
	}
	if sr.hasEventTriggers {
		b = triggers(b, `,"session_recording_event_triggers":`, sr.eventTriggers, false)
	}
	if sr.hasExposureTriggers {
		// Exposure triggers are keyed by gate / experiment names: hashed like them.
		b = triggers(b, `,"session_recording_exposure_triggers":`, sr.exposureTriggers, true)
	}
	if sr.hasPrivacy {
		b = append(b, `,"session_recording_privacy_settings":{`...)
		for i, f := range sr.privacy {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, f.key)
			b = append(b, ':')
			b = append(b, f.raw...)
		}
		b = append(b, '}')
	}
	return b
}
