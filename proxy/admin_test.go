package proxy

import (
	"net/http"
	"testing"
)

// TestDebugPprofOnAdminPort: debug.pprof serves the profiler on the admin port, and only then.
func TestDebugPprofOnAdminPort(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		cfg := intakeConfig(t)
		cfg.Debug.Pprof = enabled
		e := startIntake(t, cfg)
		resp, err := http.Get("http://" + e.app.AdminAddr().String() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusNotFound
		if enabled {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("debug.pprof %v: /debug/pprof/goroutine answered %d, want %d", enabled, resp.StatusCode, want)
		}
	}
}
