package evalcore

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// Tests of the evaluation fast paths: shared exposure lists, per-user caches,
// the bucket bitmap, and allocation-free checks.

func TestInternedExposures(t *testing.T) {
	var tab internTable
	tab.init(1)
	a := []SecondaryExposure{{"g", true, "r1"}, {"h", false, "r2"}}
	x := tab.intern(a)
	y := tab.intern(append([]SecondaryExposure(nil), a...))
	if !reflect.DeepEqual(x, a) || &x[0] != &y[0] {
		t.Fatalf("equal lists are not shared: %v %v", x, y)
	}
	if cap(x) != len(x) {
		t.Fatalf("cap %d != len %d: an append could write into the shared list", cap(x), len(x))
	}
	_ = append(x, SecondaryExposure{Gate: "z"})
	if z := tab.intern(a); len(z) != 2 || z[1].Gate != "h" {
		t.Fatalf("shared list changed: %v", z)
	}
	if tab.intern(nil) != nil || tab.intern([]SecondaryExposure{}) != nil {
		t.Fatal("empty lists should be nil")
	}
	// Past the table's capacity lists are copied, still correct.
	for i := 0; i < 2*tab.size; i++ {
		l := []SecondaryExposure{{fmt.Sprint("gate", i), i%2 == 0, "r"}}
		if got := tab.intern(l); !reflect.DeepEqual(got, l) {
			t.Fatalf("list %d: %v", i, got)
		}
	}
	if n := int(tab.count.Load()); n > tab.size/2 {
		t.Fatalf("table holds %d lists, over its bound %d", n, tab.size/2)
	}
}

// TestConcurrentEvaluation: goroutines sharing users and an evaluator (pooled
// contexts, interned lists, cached user agents) answer as one goroutine does.
func TestConcurrentEvaluation(t *testing.T) {
	c := loadConformance(t)
	users := c.users
	if raceEnabled || testing.Short() {
		users = users[:20]
	}
	type answer struct {
		gates   []GateResult
		configs []ConfigResult
		layers  []LayerResult
	}
	eval := func(e *Evaluator, u *User) answer {
		var a answer
		for _, n := range c.rs.gateNames {
			a.gates = append(a.gates, e.CheckGate(u, n))
		}
		for _, n := range c.rs.configNames {
			a.configs = append(a.configs, e.GetConfig(u, n))
		}
		for _, n := range c.rs.layerNames {
			a.layers = append(a.layers, e.GetLayer(u, n))
		}
		return a
	}
	want := make([]answer, len(users))
	seq := c.evaluator()
	for i, u := range users {
		want[i] = eval(seq, u)
	}
	// A fresh evaluator and freshly parsed users: the intern table and the
	// users' user-agent caches fill while the goroutines race.
	e := c.evaluator()
	fresh := make([]*User, len(users))
	for i := range users {
		fresh[i] = mustUser(t, string(c.raws[i]))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := range users {
				i := (k + w*7) % len(users)
				if got := eval(e, fresh[i]); !reflect.DeepEqual(got, want[i]) {
					select {
					case errs <- fmt.Sprintf("worker %d user %d: results differ from a sequential run", w, i):
					default:
					}
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func TestBucketBits(t *testing.T) {
	for _, tc := range []struct {
		target any
		set    []int
		unset  []int
	}{
		{[]any{0, 7, "999", 5.0, "07", "-1", 1000, "1.0", "x"}, []int{0, 5, 7, 999}, []int{1, 6, 998}},
		{map[string]any{"3": true, "003": true, "42": false}, []int{3, 42}, []int{0, 4}},
	} {
		c := &compiler{rs: &RuleSet{}, targets: map[string]*target{}}
		raw := mustJSON(tc.target)
		tg := c.compileTarget(raw, false)
		bits := bucketBits(&tg)
		for _, b := range tc.set {
			if bits[b/64]>>(b%64)&1 != 1 {
				t.Errorf("%s: bucket %d not set", raw, b)
			}
		}
		for _, b := range tc.unset {
			if bits[b/64]>>(b%64)&1 != 0 {
				t.Errorf("%s: bucket %d set", raw, b)
			}
		}
	}
	if bucketBits(&target{kind: targetString, str: "5", hasStr: true}) != nil {
		t.Error("string targets have no bitmap")
	}
}

// TestSteadyStateAllocations: after warm-up, checking a gate and getting a
// config or layer allocate nothing (results share interned exposure lists).
func TestSteadyStateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := loadConformance(t)
	e := c.evaluator()
	u := c.users[0]
	for _, n := range c.rs.gateNames {
		e.CheckGate(u, n)
	}
	for _, n := range c.rs.configNames {
		e.GetConfig(u, n)
	}
	for _, n := range c.rs.layerNames {
		e.GetLayer(u, n)
	}
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"CheckGate", func() {
			for _, n := range c.rs.gateNames {
				_ = e.CheckGate(u, n)
			}
		}},
		{"GetConfig", func() {
			for _, n := range c.rs.configNames {
				_ = e.GetConfig(u, n)
			}
		}},
		{"GetLayer", func() {
			for _, n := range c.rs.layerNames {
				if e.rs.layers[n].useNewLayerEval {
					continue // builds its merged parameter object per call
				}
				_ = e.GetLayer(u, n)
			}
		}},
	} {
		if n := testing.AllocsPerRun(20, tc.f); n != 0 {
			t.Errorf("%s: %.1f allocations per pass over every spec", tc.name, n)
		}
	}
}
