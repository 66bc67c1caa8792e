'use strict';
// Reference side of difftest_test.go: asks statsig-node-core's own user-agent helper
// (Statsig.getParsedUserAgentValueForUser, first-party parser) for each user agent.
// usage: node refparse.js REFERENCE_DIR < in.jsonl > out.jsonl
//   in:  one JSON string (a user agent) per line
//   out: one JSON array [os_name, os_version, browser_name, browser_version] per line (null if none)
const path = require('path');
const fs = require('fs');
const { newOfflineStatsig, makeUser } = require(path.join(process.argv[2], 'lib', 'core.js'));

(async () => {
  // an empty rule set: the helper needs an initialized instance, nothing else
  const dcs = JSON.stringify({
    dynamic_configs: {}, feature_gates: {}, layer_configs: {}, condition_map: {},
    experiment_to_layer: {}, has_updates: true, time: 1,
  });
  const statsig = await newOfflineStatsig(dcs, { quiet: true });
  const out = [];
  for (const line of fs.readFileSync(0, 'utf8').split('\n')) {
    if (line === '') continue;
    const r = statsig.getParsedUserAgentValueForUser(makeUser({ userID: 'u', userAgent: JSON.parse(line) }));
    out.push(JSON.stringify(r == null ? null : [r.os_name, r.os_version, r.browser_name, r.browser_version]));
  }
  fs.writeSync(1, out.join('\n') + '\n');
  // shutdown() can hang with the network disabled; nothing is left to flush
  process.exit(0);
})().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
