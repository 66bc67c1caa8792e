package proxy

import (
	"encoding/json"
	"net/http"
)

// newRouter maps Statsig's paths to the App's handlers.
func newRouter(a *App) http.Handler {
	mux := http.NewServeMux()
	// Each group of endpoints registers itself from its own file.
	a.registerRuleSets(mux) // dcs.go: download_config_specs, get_id_lists, ID-list files
	a.registerEvents(mux)   // events.go: log_event, rgstr
	a.eval.register(mux)    // eval.go: check_gate, get_config, get_layer, initialize
	mux.HandleFunc("POST /v1/sdk_exception", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusAccepted, map[string]any{"success": true})
	})
	// Statsig forward proxy compatible probes, so its Helm probes keep working.
	for _, p := range []string{"/v1/health", "/v1/ready", "/v1/startup"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, _ *http.Request) {
			if ok, reasons := a.Ready(); !ok && p != "/v1/health" {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reasons": reasons})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes Statsig-style JSON errors: {"success":false,"error":reason}.
func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, map[string]any{"success": false, "error": reason})
}
