package proxy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sigedge/sigedge/internal/sdktest"
)

// TestJSClientInitializesThroughProxy runs the official @statsig/js-client in Node against the
// proxy's /v1/initialize and reads a gate, a dynamic config, an experiment and a layer parameter;
// each must equal what the HTTP evaluation API answers for the same user.
func TestJSClientInitializesThroughProxy(t *testing.T) {
	env := newEvalTestEnv(t, exampleRules(t))
	const script = `
const { StatsigClient } = require('@statsig/js-client');
(async () => {
  const user = { userID: process.env.USER_ID, country: 'US', email: 'dev@example.com' };
  const client = new StatsigClient(process.env.CLIENT_KEY, user, {
    networkConfig: { api: process.env.PROXY + '/v1' },
    disableLogging: true,
  });
  const details = await client.initializeAsync();
  const out = {
    reason: client.getFeatureGate('new_checkout').details.reason,
    gate: client.checkGate('new_checkout'),
    internal: client.checkGate('internal_tools'),
    config: client.getDynamicConfig('checkout_settings').value,
    experimentGroup: client.getExperiment('button_color_test').groupName,
    experimentColor: client.getExperiment('button_color_test').get('button_color', 'none'),
    layerColor: client.getLayer('checkout_layer').get('button_color', 'none'),
  };
  console.log(JSON.stringify(out));
  await client.shutdown();
})().catch(e => { console.error(e); process.exit(1); });
`
	for _, userID := range []string{"beta-user", "u1", "u2"} {
		out, err := sdktest.RunNode(t, time.Minute, script, "PROXY="+env.srv.URL, "CLIENT_KEY="+testClientKey, "USER_ID="+userID)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Reason          string         `json:"reason"`
			Gate            bool           `json:"gate"`
			Internal        bool           `json:"internal"`
			Config          map[string]any `json:"config"`
			ExperimentGroup string         `json:"experimentGroup"`
			ExperimentColor string         `json:"experimentColor"`
			LayerColor      string         `json:"layerColor"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &got); err != nil {
			t.Fatalf("script output %q: %v", out, err)
		}
		user := `{"userID":"` + userID + `","country":"US","email":"dev@example.com"}`
		api := func(path, field, name string) map[string]any {
			_, body := env.post(path, testServerKey, `{"user":`+user+`,"`+field+`":"`+name+`","disableExposureLogging":true}`)
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
		gate := api("/v1/check_gate", "gateName", "new_checkout")
		internal := api("/v1/check_gate", "gateName", "internal_tools")
		cfg := api("/v1/get_config", "configName", "checkout_settings")
		exp := api("/v1/get_config", "configName", "button_color_test")
		layer := api("/v1/get_layer", "layerName", "checkout_layer")
		if got.Reason != "Network:Recognized" {
			t.Errorf("user %s: js-client evaluation reason %q, want Network:Recognized (values from the proxy)", userID, got.Reason)
		}
		if got.Gate != gate["value"] || got.Internal != internal["value"] {
			t.Errorf("user %s: js-client gates %v/%v, API %v/%v", userID, got.Gate, got.Internal, gate["value"], internal["value"])
		}
		if mustJSON(got.Config) != mustJSON(cfg["value"]) {
			t.Errorf("user %s: js-client config %v, API %v", userID, got.Config, cfg["value"])
		}
		if got.ExperimentGroup != exp["group_name"] || got.ExperimentColor != exp["value"].(map[string]any)["button_color"] {
			t.Errorf("user %s: js-client experiment %s/%s, API %v", userID, got.ExperimentGroup, got.ExperimentColor, exp)
		}
		if got.LayerColor != layer["value"].(map[string]any)["button_color"] {
			t.Errorf("user %s: js-client layer %s, API %v", userID, got.LayerColor, layer)
		}
	}
}
