package evalcore

import (
	"testing"
)

// Benchmarks on the conformance rule set × its users (skipped when absent):
//
//	go test -run '^$' -bench . -benchmem ./evalcore
//
// Each op is one evaluation (or one full initialize response).

func benchSetup(b *testing.B) (*Evaluator, *conformance) {
	c := loadConformance(b)
	return c.evaluator(), c
}

func BenchmarkGateValue(b *testing.B) {
	e, c := benchSetup(b)
	names := c.rs.gateNames
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		e.GateValue(c.users[i%len(c.users)], names[i%len(names)])
		i++
	}
}

func BenchmarkCheckGate(b *testing.B) {
	e, c := benchSetup(b)
	names := c.rs.gateNames
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_ = e.CheckGate(c.users[i%len(c.users)], names[i%len(names)])
		i++
	}
}

func benchConfigs(b *testing.B, experiments bool) {
	e, c := benchSetup(b)
	var names []string
	for _, n := range c.rs.configNames {
		if (c.rs.configs[n].entity == "experiment") == experiments {
			names = append(names, n)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		u, n := c.users[i%len(c.users)], names[i%len(names)]
		if experiments {
			_ = e.GetExperiment(u, n)
		} else {
			_ = e.GetDynamicConfig(u, n)
		}
		i++
	}
}

func BenchmarkDynamicConfig(b *testing.B) { benchConfigs(b, false) }
func BenchmarkExperiment(b *testing.B)    { benchConfigs(b, true) }

func BenchmarkLayer(b *testing.B) {
	e, c := benchSetup(b)
	names := c.rs.layerNames
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_ = e.GetLayer(c.users[i%len(c.users)], names[i%len(names)])
		i++
	}
}

// BenchmarkAllSpecs mirrors the reference runner's --bench pass: every spec
// for every user (evaluations/s = 1e9 / ns per op).
func BenchmarkAllSpecs(b *testing.B) {
	e, c := benchSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	nG, nC := len(c.rs.gateNames), len(c.rs.configNames)
	total := nG + nC + len(c.rs.layerNames)
	for b.Loop() {
		u := c.users[(i/total)%len(c.users)]
		k := i % total
		switch {
		case k < nG:
			_ = e.CheckGate(u, c.rs.gateNames[k])
		case k < nG+nC:
			_ = e.GetConfig(u, c.rs.configNames[k-nG])
		default:
			_ = e.GetLayer(u, c.rs.layerNames[k-nG-nC])
		}
		i++
	}
}

func BenchmarkClientInitializeResponse(b *testing.B) {
	e, c := benchSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := e.ClientInitializeResponse(c.users[i%len(c.users)], InitOptions{Hash: HashDJB2}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkCompile(b *testing.B) {
	c := loadConformance(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(c.payload, CompileOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
