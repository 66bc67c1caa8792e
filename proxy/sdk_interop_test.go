package proxy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	statsig "github.com/statsig-io/go-sdk"

	"github.com/sigedge/sigedge/configcache/configcachetest"
	"github.com/sigedge/sigedge/internal/sdktest"
)

// interopSpec is the rule set the SDK interop tests start from: a gate on for everyone, a gate
// for the users of an ID list, and a config.
func interopSpec(t int64, alwaysOn bool) configcachetest.Spec {
	return configcachetest.Spec{
		Time: t,
		Gates: []configcachetest.Gate{
			{Name: "always_on", Pass: alwaysOn},
			{Name: "vip_gate", Pass: true, IDList: "vips"},
		},
		Configs: []configcachetest.Config{{Name: "theme", Value: map[string]any{"color": "blue"}}},
	}
}

// interopUpstream is the fake Statsig of an SDK interop test, with controls a script can call.
func interopUpstream(t *testing.T, key string) *configcachetest.Upstream {
	up := configcachetest.New(t)
	up.SetSpec(key, interopSpec(1000, true))
	up.SetIDList(key, "vips", []byte(configcachetest.IDListLine("vip-user")), "vips-1", 1000)
	up.OnControl("flip", func() { up.SetSpec(key, interopSpec(2000, false)) })
	up.OnControl("down", func() { up.SetMode(configcachetest.Fail) })
	return up
}

func TestGoSDKThroughProxy(t *testing.T) {
	key := "secret-go-sdk-interop"
	up := interopUpstream(t, key)
	cfg := rsConfig(t, up, nil)
	_, base, _ := rsStartProxy(t, cfg)
	const sdkSync = 200 * time.Millisecond
	options := func() *statsig.Options {
		return &statsig.Options{
			API:                  base + "/v1",
			ConfigSyncInterval:   sdkSync,
			IDListSyncInterval:   sdkSync,
			StatsigLoggerOptions: statsig.StatsigLoggerOptions{DisableAllLogging: true, DisableInitDiagnostics: true, DisableSyncDiagnostics: true, DisableApiDiagnostics: true},
			IPCountryOptions:     statsig.IPCountryOptions{Disabled: true},
			UAParserOptions:      statsig.UAParserOptions{Disabled: true},
		}
	}
	client, details := statsig.NewClientWithDetails(key, options())
	t.Cleanup(client.Shutdown)
	if !details.Success || details.Source != statsig.SourceNetwork {
		t.Fatalf("go-sdk did not initialize through the proxy: success %v source %v err %v", details.Success, details.Source, details.Error)
	}
	u1, vip := statsig.User{UserID: "u1"}, statsig.User{UserID: "vip-user"}
	if !client.CheckGate(u1, "always_on") {
		t.Fatal("always_on is off")
	}
	if !client.CheckGate(vip, "vip_gate") || client.CheckGate(u1, "vip_gate") {
		t.Fatal("the ID-list gate is wrong: the ID list did not reach the SDK through the proxy")
	}
	if cfgVal := client.GetConfig(u1, "theme"); cfgVal.GetString("color", "") != "blue" {
		t.Fatalf("config value %v", cfgVal.Value)
	}
	if up.Count("", "id_list_file") != 1 || up.Count("", "get_id_lists") < 1 {
		t.Fatalf("the proxy did not fetch the ID list from Statsig")
	}

	// A change at Statsig reaches the SDK within the proxy's poll interval (+ the SDK's own) + 1 s.
	up.SetSpec(key, interopSpec(2000, false))
	changed := time.Now()
	budget := cfg.RuleSets.PollInterval + cfg.RuleSets.PollJitter + sdkSync + time.Second
	up.WaitFor(t, budget, "the rule change in go-sdk", func() bool { return !client.CheckGate(u1, "always_on") })
	t.Logf("go-sdk saw the change %s after it was made at Statsig", time.Since(changed).Round(time.Millisecond))

	// Statsig goes down: the running SDK keeps its rules, and a new one still initializes.
	up.SetMode(configcachetest.Fail)
	failedPolls := func() int {
		return len(up.Requests(func(r configcachetest.Request) bool { return r.Endpoint == "dcs_v1" && r.SinceTime == 2000 }))
	}
	before := failedPolls()
	up.WaitFor(t, 10*time.Second, "two failed proxy polls", func() bool { return failedPolls() >= before+2 })
	if client.CheckGate(u1, "always_on") || !client.CheckGate(vip, "vip_gate") {
		t.Fatal("go-sdk lost its rules while Statsig was down")
	}
	fresh, details := statsig.NewClientWithDetails(key, options())
	t.Cleanup(fresh.Shutdown)
	if !details.Success || fresh.CheckGate(u1, "always_on") || !fresh.CheckGate(vip, "vip_gate") {
		t.Fatalf("a new go-sdk could not initialize from the proxy while Statsig was down: %v", details.Error)
	}
}

// nodeInteropScript drives one Node SDK through the proxy: initialize, evaluate, flip the rule at
// the fake Statsig, wait for the SDK to see it, take Statsig down, evaluate again. It prints JSON.
const nodeInteropScript = `
const base = process.env.PROXY, key = process.env.KEY, fake = process.env.FAKE, which = process.env.SDK;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  let check, done;
  if (which === 'statsig-node') {
    const statsig = require('statsig-node');
    await statsig.initialize(key, {
      api: base + '/v1', rulesetsSyncIntervalMs: 1000, idListsSyncIntervalMs: 1000,
      disableDiagnostics: true, disableAllLogging: true,
      logger: { logLevel: 'none', warn() {}, error() {} },
    });
    check = (user, gate) => statsig.checkGate({ userID: user }, gate);
    done = () => statsig.shutdownAsync();
  } else {
    const { Statsig, StatsigUser } = require('@statsig/statsig-node-core');
    const s = new Statsig(key, {
      specsUrl: base + '/v2/download_config_specs', idListsUrl: base + '/v1/get_id_lists', enableIdLists: true,
      logEventUrl: base + '/v1/log_event', disableAllLogging: true, outputLogLevel: 'none',
      specsSyncIntervalMs: 1000, idListsSyncIntervalMs: 1000, // below 1 s node-core falls back to 10 s
    });
    const res = await s.initialize();
    if (!res.isSuccess) throw new Error('initialize failed: ' + JSON.stringify(res));
    check = (user, gate) => s.checkGate(new StatsigUser({ userID: user }), gate);
    done = () => s.shutdown();
  }
  const out = {};
  out.initial = check('u1', 'always_on');
  // ID lists may arrive just after initialize.
  for (let i = 0; i < 100 && !check('vip-user', 'vip_gate'); i++) await sleep(50);
  out.vip = check('vip-user', 'vip_gate');
  out.nonVip = check('u1', 'vip_gate');
  await fetch(fake + '/__control/flip', { method: 'POST' });
  const t0 = Date.now();
  while (Date.now() - t0 < 20000 && check('u1', 'always_on')) await sleep(50);
  out.flipMs = Date.now() - t0;
  out.flipped = !check('u1', 'always_on');
  await fetch(fake + '/__control/down', { method: 'POST' });
  await sleep(1500); // a few proxy polls and SDK syncs against a down Statsig
  out.downAlwaysOn = check('u1', 'always_on');
  out.downVip = check('vip-user', 'vip_gate');
  await done();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`

func TestNodeSDKsThroughProxy(t *testing.T) {
	sdktest.NodeModules(t) // skips without node/npm
	cases := []struct {
		sdk     string
		sdkSync time.Duration // the SDK's own sync interval (statsig-node's minimum is 5 s)
	}{
		{"statsig-node", 5 * time.Second},
		{"@statsig/statsig-node-core", time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.sdk, func(t *testing.T) {
			t.Parallel()
			key := "secret-node-interop-" + strings.TrimPrefix(strings.ReplaceAll(tc.sdk, "/", "-"), "@")
			up := interopUpstream(t, key)
			cfg := rsConfig(t, up, nil)
			_, base, _ := rsStartProxy(t, cfg)
			out, err := sdktest.RunNode(t, 90*time.Second, nodeInteropScript,
				"PROXY="+base, "KEY="+key, "FAKE="+up.URL, "SDK="+tc.sdk)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Initial, Vip, NonVip, Flipped, DownAlwaysOn, DownVip bool
				FlipMs                                               int64
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("script output %q: %v", out, err)
			}
			t.Logf("%s: %+v", tc.sdk, res)
			if !res.Initial || !res.Vip || res.NonVip {
				t.Fatalf("evaluations through the proxy are wrong: %+v", res)
			}
			budget := cfg.RuleSets.PollInterval + cfg.RuleSets.PollJitter + tc.sdkSync + time.Second
			if !res.Flipped || time.Duration(res.FlipMs)*time.Millisecond > budget {
				t.Fatalf("rule change seen after %d ms (flipped %v), want within %s", res.FlipMs, res.Flipped, budget)
			}
			if res.DownAlwaysOn || !res.DownVip {
				t.Fatalf("rules lost while Statsig was down: %+v", res)
			}
			endpoint := "dcs_v1"
			if strings.Contains(tc.sdk, "core") {
				endpoint = "dcs_v2"
			}
			if up.Count("", endpoint) == 0 || up.Count("", "id_list_file") == 0 {
				t.Fatalf("the proxy did not serve the SDK's format (%s) or ID lists", endpoint)
			}
		})
	}
}
