package sdktest

import (
	"strings"
	"testing"
	"time"
)

func TestNodeSDKsLoad(t *testing.T) {
	out, err := RunNode(t, time.Minute, `
const core = require('@statsig/statsig-node-core');
const legacy = require('statsig-node');
const js = require('@statsig/js-client');
console.log(typeof core.Statsig, typeof legacy.initialize, typeof js.StatsigClient);
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "function function function" {
		t.Fatalf("SDK exports: got %q", got)
	}
}
