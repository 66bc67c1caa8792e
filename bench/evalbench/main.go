// Command evalbench measures evaluations per second of sigedge's evalcore on one core, for every
// gate, dynamic config and layer of a rule set and every user of a JSON-lines file, and, with -sdk,
// of the official Go SDK (github.com/statsig-io/go-sdk v1.35.1, fed the v1 conversion of the same
// rule set) on the same input in the same run. With -ref it also runs the reference runner's own
// benchmark (statsig-node-core, ../shared/reference installed with npm ci) between its rounds.
//
//	cd bench && go run ./evalbench -dcs ../../shared/conformance/eval_proj_dcs.json \
//	    -users ../../shared/conformance/users.jsonl -sdk [-ref "$ref"] [-rounds 3]
//
// Each engine is reported in evaluations per wall-clock second and per CPU-second of the process
// (getrusage). On a shared, loaded machine the wall rate falls with the load while the CPU rate
// mostly does not, so the CPU rate is the better estimate of one dedicated core. With -rounds the
// engines are measured alternately and the medians are reported, so both see the same load.
//
// It lives in its own module so the main module never depends on an SDK.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	statsig "github.com/statsig-io/go-sdk"
	"github.com/statsig-io/ip3country-go/pkg/countrylookup"

	"github.com/sigedge/sigedge/evalcore"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "evalbench:", err)
		os.Exit(1)
	}
}

type options struct {
	dcs, users string
	sdk        bool
	noUA       bool
	duration   time.Duration
	rounds     int
	reparse    bool
	ref        string
	refReps    int
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("evalbench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.dcs, "dcs", "", "rule set: a download_config_specs payload, v1 or dcs-v2 (required)")
	fs.StringVar(&o.users, "users", "", "users: one StatsigUser JSON object per line (required)")
	fs.BoolVar(&o.sdk, "sdk", false, "also measure the official Go SDK (go-sdk v1.35.1) and print the ratio")
	fs.BoolVar(&o.noUA, "no-ua", false, "remove userAgent from every user (go-sdk v1 re-parses user agents on every check)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long to measure each engine per round")
	fs.BoolVar(&o.reparse, "reparse", false, "parse every user anew in every pass, so ParseUser and per-user caches (user agent) are paid each pass, as a request would")
	fs.IntVar(&o.rounds, "rounds", 1, "measure the engines alternately this many times and report medians")
	fs.StringVar(&o.ref, "ref", "", "installed reference runner directory: also run its --bench (wall-clock rate) each round")
	fs.IntVar(&o.refReps, "ref-reps", 5, "passes of the reference's --bench per round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.dcs == "" || o.users == "" {
		fs.Usage()
		return errors.New("-dcs and -users are required")
	}
	// One core, as the goal is stated per core.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()

	payload, err := os.ReadFile(o.dcs)
	if err != nil {
		return err
	}
	rawUsers, err := readUsers(o.users, o.noUA)
	if err != nil {
		return err
	}
	rs, err := evalcore.Compile(payload, evalcore.CompileOptions{})
	if err != nil {
		return fmt.Errorf("compile %s: %w", o.dcs, err)
	}
	gates, configs, layers := rs.GateNames(), rs.ConfigNames(), rs.LayerNames()
	perUser := len(gates) + len(configs) + len(layers)
	fmt.Fprintf(out, "rule set: %d gates, %d configs, %d layers; %d users; %d evaluations per pass; GOMAXPROCS=1\n",
		len(gates), len(configs), len(layers), len(rawUsers), perUser*len(rawUsers))

	ev := evalcore.NewEvaluator(rs, evalcore.EvaluatorOptions{Countries: countrylookup.New()})
	users := make([]*evalcore.User, len(rawUsers))
	for i, raw := range rawUsers {
		if users[i], err = evalcore.ParseUser(raw); err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
	}
	sigedgePass := func() {
		for i, u := range users {
			if o.reparse {
				u, _ = evalcore.ParseUser(rawUsers[i])
			}
			for _, g := range gates {
				ev.CheckGate(u, g)
			}
			for _, c := range configs {
				ev.GetConfig(u, c)
			}
			for _, l := range layers {
				ev.GetLayer(u, l)
			}
		}
	}

	var sdkPass func()
	if o.sdk {
		v1, err := evalcore.ConvertToV1(payload, evalcore.V1Options{})
		if err != nil {
			return fmt.Errorf("convert to v1 for go-sdk: %w", err)
		}
		details := statsig.InitializeWithOptions("secret-evalbench", &statsig.Options{
			LocalMode:       true,
			BootstrapValues: string(v1),
			OutputLoggerOptions: statsig.OutputLoggerOptions{
				LogCallback: func(string, error) {},
			},
		})
		if !details.Success {
			return fmt.Errorf("go-sdk did not initialize: %v", details.Error)
		}
		defer statsig.Shutdown()
		sdkUsers := make([]statsig.User, len(rawUsers))
		for i, raw := range rawUsers {
			sdkUsers[i] = toSDKUser(raw)
		}
		experiments := map[string]bool{}
		for _, c := range configs {
			if e, _ := rs.ConfigEntity(c); e == "experiment" {
				experiments[c] = true
			}
		}
		sdkPass = func() {
			for _, u := range sdkUsers {
				for _, g := range gates {
					statsig.CheckGateWithExposureLoggingDisabled(u, g)
				}
				for _, c := range configs {
					if experiments[c] {
						statsig.GetExperimentWithExposureLoggingDisabled(u, c)
					} else {
						statsig.GetConfigWithExposureLoggingDisabled(u, c)
					}
				}
				for _, l := range layers {
					statsig.GetLayerWithExposureLoggingDisabled(u, l)
				}
			}
		}
	}

	var se, sd rates
	var ref []float64
	for round := 0; round < max(o.rounds, 1); round++ {
		se.add(measure(o.duration, perUser*len(users), sigedgePass))
		if sdkPass != nil {
			sd.add(measure(o.duration, perUser*len(users), sdkPass))
		}
		if o.ref != "" {
			r, err := runReference(o.ref, o.refReps, o.dcs, o.users, o.noUA)
			if err != nil {
				return err
			}
			ref = append(ref, r)
		}
	}
	fmt.Fprintf(out, "sigedge evalcore: %s evaluations/s (wall), %s per CPU-second\n", human(se.wall()), human(se.cpu()))
	if sdkPass != nil {
		fmt.Fprintf(out, "go-sdk v1.35.1:   %s evaluations/s (wall), %s per CPU-second\n", human(sd.wall()), human(sd.cpu()))
		fmt.Fprintf(out, "ratio sigedge/go-sdk: %.1fx (wall), %.1fx (CPU time)\n", se.wall()/sd.wall(), se.cpu()/sd.cpu())
	}
	if len(ref) > 0 {
		r := median(ref)
		fmt.Fprintf(out, "reference statsig-node-core (its --bench, median pass): %s evaluations/s (wall)\n", human(r))
		fmt.Fprintf(out, "ratio sigedge/reference: %.1fx (wall, same rounds)\n", se.wall()/r)
	}
	return nil
}

// rate is one measurement: evaluations per wall-clock second and per CPU-second.
type rate struct{ wall, cpu float64 }

// rates collects a rate per round.
type rates []rate

func (r *rates) add(x rate) { *r = append(*r, x) }

func (r rates) wall() float64 {
	var xs []float64
	for _, x := range r {
		xs = append(xs, x.wall)
	}
	return median(xs)
}

func (r rates) cpu() float64 {
	var xs []float64
	for _, x := range r {
		xs = append(xs, x.cpu)
	}
	return median(xs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runReference runs the reference runner's own benchmark and returns its median evaluations/s.
func runReference(dir string, reps int, dcs, users string, noUA bool) (float64, error) {
	if noUA {
		raw, err := readUsers(users, true)
		if err != nil {
			return 0, err
		}
		f, err := os.CreateTemp("", "evalbench-users-*.jsonl")
		if err != nil {
			return 0, err
		}
		defer os.Remove(f.Name())
		for _, u := range raw {
			f.Write(append(u, '\n'))
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
		users = f.Name()
	}
	cmd := exec.Command(filepath.Join(dir, "bin", "evaluate"), "--bench="+strconv.Itoa(reps), dcs, users)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("reference --bench: %w: %s", err, stderr.String())
	}
	// The summary is the last JSON line.
	lines := bytes.Split(bytes.TrimSpace(outb), []byte("\n"))
	var res struct {
		Median float64 `json:"median_evals_per_sec"`
	}
	if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil || res.Median == 0 {
		return 0, fmt.Errorf("reference --bench: unexpected output %q", lines[len(lines)-1])
	}
	return res.Median, nil
}

// measure runs pass repeatedly for at least d (and at least twice) and returns evaluations per
// wall-clock second and per CPU-second of the process (GC included).
func measure(d time.Duration, evalsPerPass int, pass func()) rate {
	pass() // warm up caches and pools
	runtime.GC()
	start, cpu0 := time.Now(), cpuTime()
	n := 0
	for n < 2 || time.Since(start) < d {
		pass()
		n++
	}
	evals := float64(n * evalsPerPass)
	return rate{wall: evals / time.Since(start).Seconds(), cpu: evals / (cpuTime() - cpu0).Seconds()}
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readUsers(path string, noUA bool) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if noUA {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(line, &m); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", path, len(out)+1, err)
			}
			delete(m, "userAgent")
			line, _ = json.Marshal(m)
		}
		out = append(out, append([]byte(nil), line...))
	}
	return out, sc.Err()
}

// toSDKUser builds a go-sdk user from StatsigUser JSON, turning numbers into strings where the
// go-sdk wants strings (it would refuse the whole user otherwise).
func toSDKUser(raw []byte) statsig.User {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	str := func(v any) string {
		switch x := v.(type) {
		case string:
			return x
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			return strconv.FormatBool(x)
		}
		return ""
	}
	strMap := func(v any) map[string]string {
		in, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		out := make(map[string]string, len(in))
		for k, x := range in {
			out[k] = str(x)
		}
		return out
	}
	anyMap := func(v any) map[string]any {
		in, _ := v.(map[string]any)
		return in
	}
	return statsig.User{
		UserID:             str(m["userID"]),
		Email:              str(m["email"]),
		IpAddress:          str(m["ip"]),
		UserAgent:          str(m["userAgent"]),
		Country:            str(m["country"]),
		Locale:             str(m["locale"]),
		AppVersion:         str(m["appVersion"]),
		Custom:             anyMap(m["custom"]),
		PrivateAttributes:  anyMap(m["privateAttributes"]),
		StatsigEnvironment: strMap(m["statsigEnvironment"]),
		CustomIDs:          strMap(m["customIDs"]),
	}
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
