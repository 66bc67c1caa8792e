package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sigedge/sigedge/internal/wire"
)

// registerIDLists adds the ID-list manifest (both forms SDKs use) and the ID-list files, which the
// proxy serves itself: the manifest's URLs are rewritten to point here.
func (a *App) registerIDLists(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/get_id_lists", a.handleIDListManifest)      // legacy SDKs; server-core with idListsUrl
	mux.HandleFunc("GET /v1/get_id_lists/{key}", a.handleIDListManifest) // server-core's CDN form: {key}.json
	mux.HandleFunc("GET /v1/download_id_list_file/{hash}/{fileID}/{name}", a.handleIDListFile)
}

// idListManifestEntry is one list in a get_id_lists answer, as SDKs read it.
type idListManifestEntry struct {
	Name         string `json:"name"`
	Size         int    `json:"size"`
	URL          string `json:"url"`
	CreationTime int64  `json:"creationTime"`
	FileID       string `json:"fileID"`
}

func (a *App) handleIDListManifest(w http.ResponseWriter, r *http.Request) {
	const endpoint = "get_id_lists"
	key := sdkKey(r)
	if !a.checkServerKey(w, endpoint, key) {
		return
	}
	set, err := a.cache.IDLists(r.Context(), key)
	if err != nil {
		a.cacheError(w, endpoint, err)
		return
	}
	base := a.publicBase(r) + "/v1/download_id_list_file/" + wire.KeyHash(key) + "/"
	out := make(map[string]idListManifestEntry, len(set.Lists))
	for name, l := range set.Lists {
		out[name] = idListManifestEntry{
			Name:         l.Name,
			Size:         l.Size(),
			URL:          base + url.PathEscape(l.FileID) + "/" + url.PathEscape(name),
			CreationTime: l.CreationTime,
			FileID:       l.FileID,
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		a.ruleSetError(w, endpoint, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	a.rsMetric.responses.WithLabelValues(endpoint, "full").Inc()
	a.rsMetric.bytes.WithLabelValues(endpoint, "identity").Add(float64(len(body)))
}

// publicBase is the base URL SDKs reach this proxy at: proxy.public_url, else the request's Host
// (with X-Forwarded-Proto when a TLS-terminating load balancer set it).
func (a *App) publicBase(r *http.Request) string {
	if u := a.cfg.Proxy.PublicURL; u != "" {
		return strings.TrimSuffix(u, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// handleIDListFile serves an ID-list file from the bytes the proxy holds, with Range support
// (Range: bytes=N- from legacy SDKs and server-core, ?range=N- for CDN-style URLs) and an exact
// Content-Length, never compressed: go-sdk and statsig-node add Content-Length to their offset and
// require it > 0, and Go's transport drops it from a gzip response.
func (a *App) handleIDListFile(w http.ResponseWriter, r *http.Request) {
	const endpoint = "id_list_file"
	hash, fileID, name := r.PathValue("hash"), r.PathValue("fileID"), r.PathValue("name")
	if k := r.Header.Get(wire.HeaderAPIKey); k != "" && wire.KeyHash(k) != hash {
		a.ruleSetError(w, endpoint, http.StatusUnauthorized, "STATSIG-API-KEY does not match this ID-list URL")
		return
	}
	set, ok := a.cache.IDListsByHash(hash)
	if !ok {
		a.ruleSetError(w, endpoint, http.StatusNotFound, "no ID lists held for this key (the proxy restarted or the key went idle): fetch get_id_lists again")
		return
	}
	l := set.Lists[name]
	if l == nil {
		a.ruleSetError(w, endpoint, http.StatusNotFound, "no such ID list: fetch get_id_lists again")
		return
	}
	if l.FileID != fileID {
		a.ruleSetError(w, endpoint, http.StatusNotFound, "this ID-list file was replaced by a newer one: fetch get_id_lists again")
		return
	}
	if r.Header.Get("Range") == "" {
		if rg, ok := queryValue(r.URL.RawQuery, "range"); ok && rg != "" {
			if start, _, _ := strings.Cut(rg, "-"); !isDigits(start) {
				a.ruleSetError(w, endpoint, http.StatusBadRequest, "range must look like 123-")
				return
			}
			r.Header.Set("Range", "bytes="+rg)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	cw := &countingWriter{ResponseWriter: w}
	// ServeContent handles Range (206 + Content-Range, 416 past the end) and sets Content-Length.
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(l.Data))
	a.rsMetric.responses.WithLabelValues(endpoint, strconv.Itoa(cw.status())).Inc()
	a.rsMetric.bytes.WithLabelValues(endpoint, "identity").Add(float64(cw.n))
}

// countingWriter records the status and body size of a response.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += n
	return n, err
}

func (c *countingWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
