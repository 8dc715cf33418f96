#!/usr/bin/env bash
# Server figures for BENCH.md: build/load against build/arrearsd, and
# redis-benchmark GET against redis-server as the peer, on this machine,
# loopback only, the same connection and pipeline settings for both.
#
#   bench/load.sh                    # as root it installs redis-server when missing
#
# For each setting (connections:pipeline) it runs our load and redis-benchmark
# one after the other, RUNS times, and prints the medians as a Markdown table.
# Environment (defaults in brackets):
#   PERSONS [10000]         persons in the generated store (city 110000, seed 1)
#   SECONDS_PER_RUN [10]    measured seconds of each run (ours adds 1 s of warmup)
#   RUNS [3]                runs of each pair; medians are reported
#   SETTINGS ["1:1 50:1 50:16"]   connections:pipeline
#   SERVER_THREADS [1]      arrearsd --threads ("" for its own default, one loop a core):
#                           one, as redis-server answers on one thread; on two
#                           cores the load generator needs the other (BENCH.md)
#   LOAD_THREADS [1]        build/load --threads (redis-benchmark runs one thread too)
#   IDS [1000]              stored ids the load cycles through
#   VALUE_BYTES [300]       size of redis values (an arrears answer is about 400 bytes)
#   KEEP [0]                1: keep the temporary directory (store, logs, raw outputs)
#   NO_BUILD [0]            1: use the binaries in build/ as they are
set -euo pipefail
cd "$(dirname "$0")/.."

PERSONS=${PERSONS:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RUNS=${RUNS:-3}
SETTINGS=${SETTINGS:-"1:1 50:1 50:16"}
SERVER_THREADS=${SERVER_THREADS-1}
LOAD_THREADS=${LOAD_THREADS:-1}
IDS=${IDS:-1000}
VALUE_BYTES=${VALUE_BYTES:-300}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
REDIS_KEYS=100000

SCRIPT=load.sh
. bench/lib.sh

# ---- what is needed -------------------------------------------------------

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
	# The peer of the benchmark, not a dependency of the build or the tests.
	[ "$(id -u)" = 0 ] || die "redis-server and redis-benchmark are missing: apt-get install redis-server (as root)"
	say "installing redis-server (Debian package) as the benchmark's peer"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

if [ "$NO_BUILD" != 1 ]; then
	make --no-print-directory build/arrears build/arrearsd >&2
	if grep -q '^build/load:' Makefile; then
		make --no-print-directory build/load >&2
	else
		gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -pthread -o build/load bench/load.c
	fi
fi
for program in build/arrears build/arrearsd build/load; do
	[ -x "$program" ] || die "$program is missing"
done

# ---- servers, stopped whatever happens ------------------------------------

workdir=$(mktemp -d)  # a fresh directory under $TMPDIR
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 1 ]; then say "kept $workdir"; else rm -rf "$workdir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "generating $PERSONS persons into $workdir/store"
build/arrears gen --persons "$PERSONS" --seed 1 --city 110000 --data "$workdir/store" >&2

ours_port=$(free_port)
build/arrearsd --listen "127.0.0.1:$ours_port" --data "$workdir/store" \
	${SERVER_THREADS:+--threads "$SERVER_THREADS"} 2>"$workdir/arrearsd.log" &
pids+=($!)
wait_port "$ours_port" "$!" || { cat "$workdir/arrearsd.log" >&2; die "arrearsd did not start"; }

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
	--daemonize no --dir "$workdir" --logfile "$workdir/redis.log" &
pids+=($!)
wait_port "$redis_port" "$!" || { cat "$workdir/redis.log" >&2; die "redis-server did not start"; }

# The same keys GET will ask for (-r draws them at random; 10 draws a key on
# average leave practically none unset).
say "loading redis with $REDIS_KEYS keys of $VALUE_BYTES bytes"
redis-benchmark -h 127.0.0.1 -p "$redis_port" -t set -n $((10 * REDIS_KEYS)) -r "$REDIS_KEYS" \
	-d "$VALUE_BYTES" -c 50 -P 16 -q >/dev/null
keys=$(redis-cli -h 127.0.0.1 -p "$redis_port" dbsize)
say "redis holds $keys keys"

# ---- runs -------------------------------------------------------------------

ours_run() { # ours_run C P: prints the key=value line
	local out
	if ! out=$(build/load --connect "127.0.0.1:$ours_port" --connections "$1" --pipeline "$2" \
		--seconds "$SECONDS_PER_RUN" --warmup 1 --ids-from "$IDS" --threads "$LOAD_THREADS" 2>&1); then
		echo "$out" >&2
		die "build/load failed (errors, malformed or lost answers): see above"
	fi
	grep '^method=' <<<"$out"
}

redis_run() { # redis_run C P N: prints "rps p50_us p99_us"
	local out
	out=$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -t get -c "$1" -P "$2" -n "$3" \
		-r "$REDIS_KEYS" -d "$VALUE_BYTES" --csv)
	# "GET","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
	grep '^"GET' <<<"$out" | tr -d '"' | awk -F, '{ printf "%.0f %.1f %.1f\n", $2, $5 * 1000, $7 * 1000 }'
}

rows=()
for setting in $SETTINGS; do
	c=${setting%%:*}
	p=${setting##*:}
	# About SECONDS_PER_RUN of GETs: a short run first gives the rate.
	probe=$(redis_run "$c" "$p" $((20000 * p + 2000 * c)))
	n=$(awk -v rps="${probe%% *}" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%d", rps * s }')
	o_rps=() o_p50=() o_p99=() r_rps=() r_p50=() r_p99=()
	for run in $(seq "$RUNS"); do
		line=$(ours_run "$c" "$p")
		echo "$line" >>"$workdir/ours.log"
		read -r rr rp50 rp99 <<<"$(redis_run "$c" "$p" "$n")"
		o_rps+=("$(field rps "$line")") o_p50+=("$(field p50_us "$line")") o_p99+=("$(field p99_us "$line")")
		r_rps+=("$rr") r_p50+=("$rp50") r_p99+=("$rp99")
		say "$c conn x pipeline $p, run $run/$RUNS: ours ${o_rps[-1]} req/s p50 ${o_p50[-1]} p99 ${o_p99[-1]} us;" \
			"redis $rr req/s p50 $rp50 p99 $rp99 us (n=$n)"
	done
	mo=$(median "${o_rps[@]}")
	mr=$(median "${r_rps[@]}")
	rows+=("$(printf '| %s conn, pipeline %s | %.0f | %s | %s | %.0f | %s | %s | %.2f |' "$c" "$p" \
		"$mo" "$(median "${o_p50[@]}")" "$(median "${o_p99[@]}")" \
		"$mr" "$(median "${r_p50[@]}")" "$(median "${r_p99[@]}")" \
		"$(awk -v a="$mo" -v b="$mr" 'BEGIN { print (b > 0) ? a / b : 0 }')")")
done

# ---- report -------------------------------------------------------------------

echo
echo "arrearsd ${SERVER_THREADS:+--threads $SERVER_THREADS }built $(date -r build/arrearsd '+%F %T'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + changes');" \
	"$(nproc) cores ($(uname -r));" \
	"$PERSONS persons, $IDS ids round robin, single-person arrears.compute as of 20251110;"
echo "$(redis-server --version | awk '{ print $1, $2, $3 }'), GET of $VALUE_BYTES-byte values;" \
	"medians of $RUNS runs of ${SECONDS_PER_RUN} s; latencies in µs; load threads $LOAD_THREADS."
echo
echo "| setting | ours req/s | ours p50 | ours p99 | redis GET req/s | redis p50 | redis p99 | ours / redis |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
