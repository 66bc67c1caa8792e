#!/bin/sh
# Event intake against its limit, with the load outside the measured process:
#
#   [RT=1] bench/intakeload/run.sh [intakeload flags, e.g. -duration 10s -rounds 3 -events 100,1000]
#
# Builds the proxy and intakeload, starts the proxy with its embedded JetStream on CPU 1
# (taskset -c 1; bench/intakeload/proxy.yaml: 127.0.0.1:18100, NATS 127.0.0.1:14322) and runs
# intakeload on CPU 0: per round and batch size, raw async JetStream publishing of the bodies
# (the limit; raw-s2: the bodies S2-compressed, as the proxy stores them) and POST /v1/log_event
# plain and gzip, alternated. The proxy runs with GOGC=400 as the Helm chart runs it
# (proxy.gcPercent; GOGC=100 bench/intakeload/run.sh for Go's default); its embedded JetStream,
# and so the raw phases, share that setting. RT=1 runs both at real-time
# priority (chrt -f 1, as root) so that other work on a shared machine does not preempt them. The
# whole run holds /tmp/sigedge-bench.lock, which the project's other benchmarks take too.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
go build -o "$tmp/proxy" "$root/cmd/proxy"
(cd "$root/bench" && go build -o "$tmp/intakeload" ./intakeload)
rt=
if [ "${RT:-0}" = 1 ]; then
	rt="chrt -f 1"
fi
cd "$root"
exec flock /tmp/sigedge-bench.lock sh -c '
	set -eu
	tmp=$1 rt=$2 gogc=$3
	shift 3
	echo "# $(date -u +%FT%TZ) RT=${RT:-0} GOGC=$gogc; $(uptime)"
	GOGC=$gogc SIGEDGE_NATS_DATA_DIR="$tmp/nats" $rt taskset -c 1 "$tmp/proxy" -config bench/intakeload/proxy.yaml &
	pid=$!
	trap "kill \$pid; wait \$pid || true; rm -rf \"$tmp\"" EXIT
	$rt taskset -c 0 "$tmp/intakeload" -server-pid "$pid" "$@"
' intakeload "$tmp" "$rt" "${GOGC:-400}" "$@"
