'use strict';
// Evaluation side of difftest_test.go: checks gates with statsig-node-core's evaluator, which is
// the path ua_based conditions take. Each user is checked against its own gates only, so the
// work grows linearly with the corpus (bin/evaluate of the reference runner checks every user
// against every gate and builds initialize responses too, far too slow for this).
// usage: node refgates.js REFERENCE_DIR DCS.json CHECKS.jsonl > out.jsonl
//   CHECKS: one {"user": StatsigUser, "gates": [gate names]} per line
//   out:    one JSON array of booleans per line, one per gate
const path = require('path');
const fs = require('fs');
const { newOfflineStatsig, makeUser } = require(path.join(process.argv[2], 'lib', 'core.js'));

(async () => {
  const statsig = await newOfflineStatsig(fs.readFileSync(process.argv[3], 'utf8'), { quiet: true });
  const opts = { disableExposureLogging: true };
  const out = [];
  for (const line of fs.readFileSync(process.argv[4], 'utf8').split('\n')) {
    if (line === '') continue;
    const { user, gates } = JSON.parse(line);
    const u = makeUser(user);
    out.push(JSON.stringify(gates.map((g) => statsig.checkGate(u, g, opts))));
  }
  fs.writeSync(1, out.join('\n') + '\n');
  process.exit(0); // shutdown() can hang with the network disabled; nothing is left to flush
})().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
