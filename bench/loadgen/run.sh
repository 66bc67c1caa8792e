#!/bin/sh
# Open-loop latency of the proxy at a constant rate: POST /v1/check_gate, POST /v1/initialize and
# GET /healthz (the admin port's liveness probe: the floor of the generator and the HTTP stack).
#
#   [RT=1] bench/loadgen/run.sh [pinned|unpinned] [rate] [duration] [repeats] [users]
#
# pinned: the proxy on CPU 1 and loadgen on CPU 0 (taskset), so loadgen does not take the
# proxy's CPU, and loadgen polls (-spin) on its own CPU; unpinned: both wherever the scheduler
# puts them, and loadgen sleeps between events. RT=1 runs both at real-time
# priority (chrt -f 1, as root), so that other work on a shared machine does not preempt them:
# what dedicated cores would give. The proxy runs config.example.yaml (the bundled rule set
# offline, embedded JetStream, exposures on) on 127.0.0.1:18000 (admin 18001) with GOGC=400, as
# the Helm chart runs it (proxy.gcPercent; GOGC=100 bench/loadgen/run.sh for Go's default). Run
# under flock /tmp/sigedge-bench.lock when the machine is shared.
#
# Each run also prints the CPU time the hypervisor stole from each CPU (/proc/stat) and loadgen's
# largest send lag: a stall of the whole VM shows in both and in /healthz, not only in the proxy.
# The last lines list each endpoint's p99 over the rounds and how many were under 2 ms.
set -eu
mode=${1:-pinned}
rate=${2:-10000}
duration=${3:-30s}
repeats=${4:-3}
users=${5:-1000}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)

case $mode in
pinned) proxy_cpu="taskset -c 1" load_cpu="taskset -c 0" spin=-spin ;;
unpinned) proxy_cpu="" load_cpu="" spin= ;;
*) echo "mode must be pinned or unpinned" >&2; exit 2 ;;
esac
if [ "${RT:-0}" = 1 ]; then
	proxy_cpu="chrt -f 1 $proxy_cpu" load_cpu="chrt -f 1 $load_cpu"
fi

go build -o "$tmp/proxy" "$root/cmd/proxy"
(cd "$root/bench" && go build -o "$tmp/loadgen" ./loadgen)

cd "$root" # config.example.yaml names the rule-set file relative to the repository
GOGC=${GOGC:-400} SIGEDGE_PROXY_LISTEN=127.0.0.1:18000 SIGEDGE_PROXY_ADMIN_LISTEN=127.0.0.1:18001 \
	SIGEDGE_NATS_PORT=0 SIGEDGE_NATS_DATA_DIR="$tmp/nats" SIGEDGE_LOG_LEVEL=warn \
	$proxy_cpu "$tmp/proxy" -config config.example.yaml >"$tmp/proxy.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

# Ready when the rule set is loaded and JetStream connected (bounded: 30 s).
i=0
until curl -sf -o /dev/null http://127.0.0.1:18001/readyz; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
		echo "proxy not ready:" >&2
		cat "$tmp/proxy.log" >&2
		exit 1
	fi
	sleep 0.1
done

# The proxy's CPU time (user + system, clock ticks) and what a loadgen run used of it.
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
hz=$(getconf CLK_TCK)
# Steal time of CPU 0 and CPU 1 (clock ticks), the 8th value of their /proc/stat lines.
steal() { awk '$1 == "cpu0" { a = $9 } $1 == "cpu1" { b = $9 } END { print a + 0, b + 0 }' /proc/stat; }
pct() { echo "$1 / $hz / $wall * 100" | bc -l | awk '{ printf "%.1f", $1 }'; }
load() {
	name=$1
	shift
	echo "## run $r: $name"
	t0=$(ticks)
	s0=$(date +%s.%N)
	read -r sa0 sb0 <<-EOF
		$(steal)
	EOF
	$load_cpu "$tmp/loadgen" $spin -rate "$rate" -duration "$duration" "$@" >"$tmp/out" || { cat "$tmp/out"; exit 1; }
	cat "$tmp/out"
	wall=$(echo "$(date +%s.%N) - $s0" | bc -l)
	read -r sa1 sb1 <<-EOF
		$(steal)
	EOF
	echo "proxy CPU: $(pct "($(ticks) - $t0)")% of one core; stolen by the hypervisor: CPU 0 $(pct "($sa1 - $sa0)")%, CPU 1 $(pct "($sb1 - $sb0)")%"
	# "latency (from intended send): p50 X p90 X p99 X p99.9 X max X" and "send lag (...): ... max X"
	awk -v n="$name" '/^latency/ { p = $10 " " $12 " " $14 } /^send lag/ { l = $15 } END { print n, p, l }' "$tmp/out" >>"$tmp/rounds"
}

echo "# $(date -u +%FT%TZ) $mode (RT=${RT:-0}), $rate/s for $duration, $users users; $(uptime)"
for r in $(seq "$repeats"); do
	load check_gate -users "$users" \
		-url http://127.0.0.1:18000/v1/check_gate -header 'STATSIG-API-KEY: secret-example' \
		-body '{"user":{"userID":"u{{n}}","email":"u{{n}}@example.com","country":"US"},"gateName":"new_checkout"}'
	load initialize -users "$users" \
		-url http://127.0.0.1:18000/v1/initialize -header 'STATSIG-API-KEY: client-example' \
		-body '{"user":{"userID":"u{{n}}","email":"u{{n}}@example.com","country":"US"},"hash":"djb2"}'
	load healthz -method GET -url http://127.0.0.1:18001/healthz
done

# One line per endpoint and measure, a value per round, in run order.
echo "# over the rounds (ms): latency p99, p99.9 and max, and loadgen's largest send lag"
awk '
	function ms(v) { sub(/ms$/, "", v); return v }
	{
		if (!($1 in n)) order[++k] = $1
		n[$1]++
		if (ms($2) + 0 < 2) under[$1]++
		p99[$1] = p99[$1] " " ms($2); p999[$1] = p999[$1] " " ms($3); mx[$1] = mx[$1] " " ms($4); lag[$1] = lag[$1] " " ms($5)
	}
	END {
		for (i = 1; i <= k; i++) {
			e = order[i]
			printf "%-10s p99:%s (under 2 ms in %d of %d)\n", e, p99[e], under[e], n[e]
			printf "%-10s p99.9:%s\n%-10s max:%s\n%-10s send lag max:%s\n", e, p999[e], e, mx[e], e, lag[e]
		}
	}' "$tmp/rounds"
