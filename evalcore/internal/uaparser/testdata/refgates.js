'use strict';
// Evaluation side of difftest_test.go: checks gates with statsig-node-core's evaluator, which is
// the path ua_based conditions take. (bin/evaluate of the reference runner does the same and
// more, such as initialize responses, which makes it too slow for tens of thousands of rules.)
// usage: node refgates.js REFERENCE_DIR DCS.json USERS.jsonl GATE... > out.jsonl
//   out: one JSON array of booleans per user, one per gate, in the order given
const path = require('path');
const fs = require('fs');
const { newOfflineStatsig, makeUser } = require(path.join(process.argv[2], 'lib', 'core.js'));

(async () => {
  const dcs = fs.readFileSync(process.argv[3], 'utf8');
  const gates = process.argv.slice(5);
  const statsig = await newOfflineStatsig(dcs, { quiet: true });
  const opts = { disableExposureLogging: true };
  const out = [];
  for (const line of fs.readFileSync(process.argv[4], 'utf8').split('\n')) {
    if (line === '') continue;
    const user = makeUser(JSON.parse(line));
    out.push(JSON.stringify(gates.map((g) => statsig.checkGate(user, g, opts))));
  }
  fs.writeSync(1, out.join('\n') + '\n');
  process.exit(0); // shutdown() can hang with the network disabled; nothing is left to flush
})().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
