package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/sigedge/sigedge/configcache"
	"github.com/sigedge/sigedge/internal/wire"
)

// registerRuleSets adds the rule-set endpoints SDKs poll.
func (a *App) registerRuleSets(mux *http.ServeMux) {
	for _, v := range []struct {
		prefix string
		format configcache.Format
	}{{"/v1", configcache.FormatV1}, {"/v2", configcache.FormatV2}} {
		h := a.handleDCS(v.format)
		mux.Handle("GET "+v.prefix+"/download_config_specs/{key}", h)
		mux.Handle("POST "+v.prefix+"/download_config_specs/{key}", h)
		mux.Handle("GET "+v.prefix+"/download_config_specs", h)
		mux.Handle("POST "+v.prefix+"/download_config_specs", h)
	}
}

// sdkKey returns the key of a request: the STATSIG-API-KEY header, else the path's {key}.json.
func sdkKey(r *http.Request) string {
	if k := r.Header.Get(wire.HeaderAPIKey); k != "" {
		return k
	}
	k := r.PathValue("key")
	k = strings.TrimSuffix(k, ".json")
	return strings.TrimSuffix(k, ".js")
}

func (a *App) handleDCS(f configcache.Format) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := sdkKey(r)
		if key == "" {
			writeError(w, http.StatusUnauthorized, "missing SDK key: send STATSIG-API-KEY or /download_config_specs/{key}.json")
			return
		}
		if !wire.IsServerKey(key) {
			writeError(w, http.StatusUnauthorized, "rule sets are served to server secret keys only")
			return
		}
		sinceTime, err := sinceTimeOf(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		e, err := a.cache.Get(r.Context(), key, f)
		if errors.Is(err, configcache.ErrUnknownKey) {
			writeError(w, http.StatusUnauthorized, "unknown SDK key")
			return
		} else if err != nil {
			writeError(w, http.StatusBadGateway, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-since-time", strconv.FormatInt(e.Time, 10))
		if sinceTime > 0 && sinceTime >= e.Time {
			_, _ = w.Write([]byte(`{"has_updates":false}`))
			return
		}
		_, _ = w.Write(e.Payload)
	}
}

// sinceTimeOf reads sinceTime from the query, or from the JSON body of a POST.
func sinceTimeOf(r *http.Request) (int64, error) {
	if s := r.URL.Query().Get("sinceTime"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("sinceTime must be an integer (milliseconds)")
		}
		return n, nil
	}
	if r.Method == http.MethodPost && r.ContentLength != 0 {
		var body struct {
			SinceTime json.Number `json:"sinceTime"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
		if err := dec.Decode(&body); err != nil {
			return 0, errors.New("body must be JSON such as {\"sinceTime\": 0}")
		}
		if body.SinceTime != "" {
			n, err := body.SinceTime.Int64()
			if err != nil {
				return 0, errors.New("sinceTime must be an integer (milliseconds)")
			}
			return n, nil
		}
	}
	return 0, nil
}
