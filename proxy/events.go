package proxy

import "net/http"

// registerEvents adds the event intake endpoints (log_event, rgstr).
func (a *App) registerEvents(mux *http.ServeMux) {
	h := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusServiceUnavailable, "event intake is not available yet")
	}
	mux.HandleFunc("POST /v1/log_event", h)
	mux.HandleFunc("POST /v1/rgstr", h)
}
