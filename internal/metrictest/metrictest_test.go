package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_total", Help: "h"}, []string{"endpoint", "code"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_gauge", Help: "h"})
	reg.MustRegister(c, g)
	c.WithLabelValues("rgstr", "202").Add(3)
	c.WithLabelValues("log_event", "503").Add(2)
	g.Set(7)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"series by all labels", "test_total", map[string]string{"endpoint": "rgstr", "code": "202"}, 3},
		{"series by one label", "test_total", map[string]string{"endpoint": "log_event"}, 2},
		{"no matching series", "test_total", map[string]string{"endpoint": "other"}, 0},
		{"unknown metric", "missing_total", nil, 0},
		{"gauge", "test_gauge", nil, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Value(t, reg, tt.metric, tt.labels); got != tt.want {
				t.Errorf("Value(%s, %v) = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
}
