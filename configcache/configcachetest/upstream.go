// Package configcachetest is a fake Statsig for tests of the rule-set cache and the SDK-facing
// endpoints: it serves rule sets per key and format (honouring sinceTime), ID-list manifests and
// files (with Range), can fail on demand, and records every request it gets.
//
// Requests may carry a path prefix before /v1 or /v2 (e.g. /a/v1/download_config_specs/…), which
// tests use to tell apart several proxies pointed at the same fake.
package configcachetest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how the fake answers rule-set and ID-list requests.
type Mode int

// Modes of the fake.
const (
	// OK serves what is configured.
	OK Mode = iota
	// Fail answers 503.
	Fail
	// Hang answers nothing until the client gives up.
	Hang
	// Garbage answers 200 with a body that is not JSON.
	Garbage
	// Refuse answers 401 for every key.
	Refuse
)

// Request is one request the fake received.
type Request struct {
	Method    string
	Prefix    string // path before /v1 or /v2 ("" when none)
	Endpoint  string // dcs_v1, dcs_v2, get_id_lists, id_list_file, control, other
	Key       string // STATSIG-API-KEY or the key in the path
	SinceTime int64
	Range     string
	Header    http.Header
	At        time.Time
}

type idList struct {
	content      []byte
	fileID       string
	creationTime int64
}

type project struct {
	payload [3][]byte // by format 1, 2
	time    [3]int64
	idLists map[string]*idList
}

// Upstream is the fake. Its methods are safe for concurrent use.
type Upstream struct {
	// URL is the base URL (http://127.0.0.1:port), without a prefix.
	URL string

	srv      *httptest.Server
	mu       sync.Mutex
	projects map[string]*project
	mode     Mode
	requests []Request
	changed  chan struct{} // closed and replaced on every request
	controls map[string]func()
}

// New starts a fake on 127.0.0.1, closed at the end of the test.
func New(t testing.TB) *Upstream {
	u := &Upstream{projects: map[string]*project{}, changed: make(chan struct{}), controls: map[string]func(){}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	u.URL = u.srv.URL
	t.Cleanup(func() {
		u.SetMode(OK) // release hanging handlers
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// SetMode switches how the fake answers.
func (u *Upstream) SetMode(m Mode) {
	u.mu.Lock()
	u.mode = m
	ch := u.changed
	u.changed = make(chan struct{})
	u.mu.Unlock()
	close(ch)
}

// SetPayload serves payload for key in format f (1 or 2); its time is read from the payload.
func (u *Upstream) SetPayload(key string, f int, payload []byte) {
	var head struct {
		Time int64 `json:"time"`
	}
	_ = json.Unmarshal(payload, &head)
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.project(key)
	p.payload[f] = payload
	p.time[f] = head.Time
}

// SetSpec serves spec for key in both formats.
func (u *Upstream) SetSpec(key string, spec Spec) {
	spec.Key = key
	u.SetPayload(key, 1, spec.V1())
	u.SetPayload(key, 2, spec.V2())
}

// SetIDList serves an ID list for key. content is the whole file.
func (u *Upstream) SetIDList(key, name string, content []byte, fileID string, creationTime int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.project(key).idLists[name] = &idList{content: append([]byte(nil), content...), fileID: fileID, creationTime: creationTime}
}

// RemoveIDList stops listing an ID list in key's manifest.
func (u *Upstream) RemoveIDList(key, name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.project(key).idLists, name)
}

// RemoveKey makes key unknown (401), as a revoked key is.
func (u *Upstream) RemoveKey(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.projects, key)
}

// OnControl registers fn to run on POST /__control/{name}, so scripts (Node SDK tests) can change
// the fake at a moment of their choosing.
func (u *Upstream) OnControl(name string, fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.controls[name] = fn
}

func (u *Upstream) project(key string) *project {
	p := u.projects[key]
	if p == nil {
		p = &project{idLists: map[string]*idList{}}
		u.projects[key] = p
	}
	return p
}

// Requests returns the requests received so far that match (nil matches all).
func (u *Upstream) Requests(match func(Request) bool) []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []Request
	for _, r := range u.requests {
		if match == nil || match(r) {
			out = append(out, r)
		}
	}
	return out
}

// Count is the number of requests to endpoint (any prefix when prefix is "*").
func (u *Upstream) Count(prefix, endpoint string) int {
	return len(u.Requests(func(r Request) bool {
		return (prefix == "*" || r.Prefix == prefix) && r.Endpoint == endpoint
	}))
}

// WaitFor waits until cond holds, re-checking after every request the fake receives (and at least
// every 50 ms, for conditions on other state). It fails the test after timeout.
func (u *Upstream) WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		u.mu.Lock()
		ch := u.changed
		u.mu.Unlock()
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			if cond() {
				return
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

func splitPath(p string) (prefix, rest string) {
	for _, v := range []string{"/v1/", "/v2/"} {
		if i := strings.Index(p, v); i >= 0 {
			return p[:i], p[i:]
		}
	}
	if i := strings.Index(p, "/files/"); i >= 0 {
		return p[:i], p[i:]
	}
	return "", p
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	prefix, rest := splitPath(r.URL.Path)
	req := Request{Method: r.Method, Prefix: prefix, Header: r.Header.Clone(), At: time.Now(), Range: r.Header.Get("Range"), Key: r.Header.Get("Statsig-Api-Key")}
	req.SinceTime, _ = strconv.ParseInt(r.URL.Query().Get("sinceTime"), 10, 64)
	var fileKey, fileName string
	switch {
	case strings.HasPrefix(rest, "/v1/download_config_specs/"), strings.HasPrefix(rest, "/v2/download_config_specs/"):
		req.Endpoint = "dcs_" + rest[1:3]
		if req.Key == "" {
			req.Key = strings.TrimSuffix(rest[strings.LastIndex(rest, "/")+1:], ".json")
		}
	case rest == "/v1/get_id_lists":
		req.Endpoint = "get_id_lists"
	case strings.HasPrefix(rest, "/files/"):
		req.Endpoint = "id_list_file"
		parts := strings.SplitN(strings.TrimPrefix(rest, "/files/"), "/", 2)
		if len(parts) == 2 {
			fileKey, fileName = parts[0], parts[1]
		}
	case strings.HasPrefix(r.URL.Path, "/__control/"):
		req.Endpoint = "control"
	default:
		req.Endpoint = "other"
	}
	u.mu.Lock()
	u.requests = append(u.requests, req)
	mode := u.mode
	ch := u.changed
	u.changed = make(chan struct{})
	close(ch)
	var control func()
	if req.Endpoint == "control" {
		control = u.controls[strings.TrimPrefix(r.URL.Path, "/__control/")]
	}
	u.mu.Unlock()

	if req.Endpoint == "control" {
		if control == nil {
			http.Error(w, "no such control", http.StatusNotFound)
			return
		}
		control()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch mode {
	case Fail:
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
		return
	case Hang:
		u.mu.Lock()
		ch := u.changed
		u.mu.Unlock()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-ch:
			}
			u.mu.Lock()
			ch, mode = u.changed, u.mode
			u.mu.Unlock()
			if mode != Hang {
				http.Error(w, "upstream down", http.StatusServiceUnavailable)
				return
			}
		}
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("<html>oops</html>"))
		return
	case Refuse:
		http.Error(w, `{"message":"Invalid key"}`, http.StatusUnauthorized)
		return
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	switch req.Endpoint {
	case "dcs_v1", "dcs_v2":
		p := u.projects[req.Key]
		f := int(rest[2] - '0')
		if p == nil || p.payload[f] == nil {
			http.Error(w, `{"message":"Invalid SDK key"}`, http.StatusUnauthorized)
			return
		}
		if req.SinceTime > 0 && req.SinceTime >= p.time[f] {
			writeJSON(w, r, []byte(`{"has_updates":false}`))
			return
		}
		writeJSON(w, r, p.payload[f])
	case "get_id_lists":
		p := u.projects[req.Key]
		if p == nil {
			http.Error(w, `{"message":"Invalid SDK key"}`, http.StatusUnauthorized)
			return
		}
		out := map[string]any{}
		for name, l := range p.idLists {
			out[name] = map[string]any{
				"name": name, "size": len(l.content), "creationTime": l.creationTime, "fileID": l.fileID,
				"url": u.URL + prefix + "/files/" + keyTag(req.Key) + "/" + name,
			}
		}
		b, _ := json.Marshal(out)
		writeJSON(w, r, b)
	case "id_list_file":
		for key, p := range u.projects {
			if keyTag(key) != fileKey {
				continue
			}
			if l := p.idLists[fileName]; l != nil {
				w.Header().Set("Content-Type", "text/plain")
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(l.content))
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

func keyTag(key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("%x", sum[:4])
}

// writeJSON answers gzip-compressed when the client accepts it, as Statsig's CDN does.
func writeJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(buf.Bytes())
		return
	}
	_, _ = w.Write(body)
}

// Gate is one feature gate of a Spec.
type Gate struct {
	Name string
	// Pass makes the gate pass every user it applies to (passPercentage 100, else 0).
	Pass bool
	// IDList, when set, limits the gate to users whose userID is in that ID list.
	IDList string
}

// Config is one dynamic config of a Spec, returning Value to everyone.
type Config struct {
	Name  string
	Value map[string]any
}

// Spec describes a small rule set that both formats can express.
type Spec struct {
	Time    int64
	Key     string // for v1's hashed_sdk_key_used; set by SetSpec
	Gates   []Gate
	Configs []Config
}

func (s Spec) gateSpec(g Gate, conds any) map[string]any {
	pass := 0
	if g.Pass {
		pass = 100
	}
	return map[string]any{
		"name": g.Name, "type": "feature_gate", "entity": "feature_gate", "salt": g.Name + "_salt", "enabled": true,
		"defaultValue": false, "idType": "userID", "version": 1,
		"rules": []any{map[string]any{
			"name": "rule", "id": g.Name + "_rule", "groupName": "everyone", "salt": g.Name + "_rule_salt",
			"passPercentage": pass, "returnValue": true, "idType": "userID", "conditions": conds,
		}},
	}
}

func (s Spec) configSpec(c Config, conds any) map[string]any {
	return map[string]any{
		"name": c.Name, "type": "dynamic_config", "entity": "dynamic_config", "salt": c.Name + "_salt", "enabled": true,
		"defaultValue": map[string]any{}, "idType": "userID", "version": 1,
		"rules": []any{map[string]any{
			"name": "rule", "id": c.Name + "_rule", "groupName": "everyone", "salt": c.Name + "_rule_salt",
			"passPercentage": 100, "returnValue": c.Value, "idType": "userID", "conditions": conds,
		}},
	}
}

func condition(g Gate) (string, map[string]any) {
	if g.IDList != "" {
		return "cond_list_" + g.IDList, map[string]any{"type": "unit_id", "operator": "in_segment_list", "targetValue": g.IDList,
			"field": nil, "additionalValues": map[string]any{}, "idType": "userID"}
	}
	return "cond_public", map[string]any{"type": "public", "operator": nil, "targetValue": nil, "field": nil,
		"additionalValues": map[string]any{}, "idType": "userID"}
}

// V1 is the spec in the legacy format.
func (s Spec) V1() []byte {
	var gates, configs []any
	lists := map[string]bool{}
	for _, g := range s.Gates {
		_, c := condition(g)
		gates = append(gates, s.gateSpec(g, []any{c}))
		if g.IDList != "" {
			lists[g.IDList] = true
		}
	}
	for _, cf := range s.Configs {
		_, c := condition(Gate{})
		configs = append(configs, s.configSpec(cf, []any{c}))
	}
	top := map[string]any{
		"has_updates": true, "time": s.Time, "feature_gates": nonNil(gates), "dynamic_configs": nonNil(configs),
		"layer_configs": []any{}, "layers": map[string]any{}, "id_lists": lists,
	}
	if s.Key != "" {
		top["hashed_sdk_key_used"] = djb2(s.Key)
	}
	b, _ := json.Marshal(top)
	return b
}

// V2 is the spec in the dcs-v2 format.
func (s Spec) V2() []byte {
	gates, configs, conds := map[string]any{}, map[string]any{}, map[string]any{}
	for _, g := range s.Gates {
		id, c := condition(g)
		conds[id] = c
		gates[g.Name] = s.gateSpec(g, []string{id})
	}
	for _, cf := range s.Configs {
		id, c := condition(Gate{})
		conds[id] = c
		configs[cf.Name] = s.configSpec(cf, []string{id})
	}
	top := map[string]any{
		"response_format": "dcs-v2", "has_updates": true, "time": s.Time, "checksum": "cs" + strconv.FormatInt(s.Time, 10),
		"company_id": "sigedge-test", "feature_gates": gates, "dynamic_configs": configs, "layer_configs": map[string]any{},
		"condition_map": conds, "experiment_to_layer": map[string]any{},
	}
	b, _ := json.Marshal(top)
	return b
}

func nonNil(a []any) []any {
	if a == nil {
		return []any{}
	}
	return a
}

func djb2(s string) string {
	var h uint32
	for i := 0; i < len(s); i++ {
		h = h<<5 - h + uint32(s[i])
	}
	return strconv.FormatUint(uint64(h), 10)
}

// IDListLine is the line of an ID-list file that adds userID: "+" and the first 8 characters of
// base64(sha256(userID)), the hashed form SDKs look up.
func IDListLine(userID string) string {
	sum := sha256.Sum256([]byte(userID))
	return "+" + base64.StdEncoding.EncodeToString(sum[:])[:8] + "\n"
}

// HashedID is the hashed form of a unit ID that ID lists hold.
func HashedID(userID string) string { return strings.TrimSuffix(IDListLine(userID)[1:], "\n") }

// Keys lists the keys with a project, sorted.
func (u *Upstream) Keys() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for k := range u.projects {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
