#!/usr/bin/env bash
# ruleset-wrk.sh measures rule-set answers per second through the proxy and, in the same run,
# through a minimal Go server returning the same bytes (the practical limit), with wrk.
#
# The servers (one test process: proxy, its embedded JetStream and the baseline server) are pinned
# to CPU 1 and wrk to CPU 0, so the load tool never takes CPU from what it measures. Targets are
# alternated for ROUNDS rounds; each line prints req/s of both and their ratio.
#
#   bench/ruleset-wrk.sh            # from the repository root; needs wrk and taskset
#   ROUNDS=5 DURATION=10s bench/ruleset-wrk.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
for tool in wrk taskset; do
	command -v "$tool" >/dev/null || { echo "ruleset-wrk: $tool is not installed (apt-get install wrk util-linux)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go test -c -o "$work/proxy.test" ./proxy/

secs=$((ROUNDS * 3 * 2 * ${DURATION%s} + 60))
# From proxy/, as go test would run it: the test finds ../shared/conformance from there.
(cd proxy && SIGEDGE_LOAD_TARGETS=${secs}s SIGEDGE_LOAD_TARGETS_FILE="$work/targets" \
	exec taskset -c 1 "$work/proxy.test" -test.run '^TestLoadTargets$' >"$work/server.log" 2>&1) &
server=$!
for _ in $(seq 120); do
	[ -s "$work/targets" ] && break
	kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.5
done
[ -s "$work/targets" ] || { echo "ruleset-wrk: targets did not start" >&2; cat "$work/server.log" >&2; exit 1; }
proxy=$(sed -n 1p "$work/targets")
baseline=$(sed -n 2p "$work/targets")
lcut=$(sed -n 3p "$work/targets")

rps() { # url encoding
	local enc=()
	[ -n "$2" ] && enc=(-H "Accept-Encoding: $2")
	taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" -H 'STATSIG-API-KEY: secret-bench' "${enc[@]}" "$1" |
		awk '/Non-2xx/ {bad=1} /Requests\/sec/ {r=$2} END {if (bad) print "ERR"; else print r}'
}

printf '%-18s %5s %12s %12s %6s\n' case round proxy baseline ratio
for c in "full|" "full_gzip|gzip" "has_updates_false|gzip"; do
	name=${c%%|*}
	enc=${c#*|}
	query=""
	[ "$name" = has_updates_false ] && query="?sinceTime=$lcut"
	for r in $(seq "$ROUNDS"); do
		p=$(rps "$proxy/v2/download_config_specs/secret-bench.json$query" "$enc")
		b=$(rps "$baseline/v2/download_config_specs/secret-bench.json$query" "$enc")
		printf '%-18s %5d %12s %12s %6s\n' "$name" "$r" "$p" "$b" "$(awk -v p="$p" -v b="$b" 'BEGIN {printf "%.2f", p / b}')"
	done
done
