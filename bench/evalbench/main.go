// Command evalbench measures evaluations per second of sigedge's evalcore on one core, for every
// gate, dynamic config and layer of a rule set and every user of a JSON-lines file, and, with -sdk,
// of the official Go SDK (github.com/statsig-io/go-sdk v1.35.1, fed the v1 conversion of the same
// rule set) on the same input in the same run.
//
//	cd bench && go run ./evalbench -dcs ../../shared/conformance/eval_proj_dcs.json \
//	    -users ../../shared/conformance/users.jsonl -sdk
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
	"runtime"
	"strconv"
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
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("evalbench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.dcs, "dcs", "", "rule set: a download_config_specs payload, v1 or dcs-v2 (required)")
	fs.StringVar(&o.users, "users", "", "users: one StatsigUser JSON object per line (required)")
	fs.BoolVar(&o.sdk, "sdk", false, "also measure the official Go SDK (go-sdk v1.35.1) and print the ratio")
	fs.BoolVar(&o.noUA, "no-ua", false, "remove userAgent from every user (go-sdk v1 re-parses user agents on every check)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long to measure each engine")
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
	sigedge := measure(o.duration, perUser*len(users), func() {
		for _, u := range users {
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
	})
	fmt.Fprintf(out, "sigedge evalcore: %s evaluations/s\n", human(sigedge))
	if !o.sdk {
		return nil
	}

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
	sdk := measure(o.duration, perUser*len(users), func() {
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
	})
	fmt.Fprintf(out, "go-sdk v1.35.1:   %s evaluations/s\n", human(sdk))
	fmt.Fprintf(out, "ratio sigedge/go-sdk: %.1fx\n", sigedge/sdk)
	return nil
}

// measure runs pass repeatedly for at least d (and at least twice) and returns evaluations/s.
func measure(d time.Duration, evalsPerPass int, pass func()) float64 {
	pass() // warm up caches and pools
	start := time.Now()
	n := 0
	for n < 2 || time.Since(start) < d {
		pass()
		n++
	}
	return float64(n*evalsPerPass) / time.Since(start).Seconds()
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
