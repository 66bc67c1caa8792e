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
# offline, embedded JetStream, exposures on) on 127.0.0.1:18000 (admin 18001). Run under
# flock /tmp/sigedge-bench.lock when the machine is shared.
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
SIGEDGE_PROXY_LISTEN=127.0.0.1:18000 SIGEDGE_PROXY_ADMIN_LISTEN=127.0.0.1:18001 \
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
load() {
	name=$1
	shift
	echo "## run $r: $name"
	t0=$(ticks)
	s0=$(date +%s.%N)
	$load_cpu "$tmp/loadgen" $spin -rate "$rate" -duration "$duration" "$@"
	echo "proxy CPU: $(echo "($(ticks) - $t0) / $hz / ($(date +%s.%N) - $s0) * 100" | bc -l | cut -d. -f1)% of one core"
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
