#!/usr/bin/env bash
# A whole city through arrearsd, for BENCH.md (issue 10): `make bench-city`.
#
# Generates a city into a store once (kept and reused while it matches),
# scans it raw with an LMDB cursor (the floor: build/walk --raw), then starts
# build/arrearsd on it and walks every person through it with build/walk for
# each compute method, and prints one Markdown table a connection count:
# seconds, persons/s, ratio to the raw scan, the server's CPU seconds during
# the walk and its peak RssAnon (the heap; the mapped store is not in it).
# Each figure is the median of RUNS runs, each run's own figures whole.
#
# Environment (defaults in brackets):
#   PERSONS [1000000]       persons of the city (arrears gen --seed $SEED)
#   SEED [5]
#   CITY_DIR [/tmp/arrears-city-$PERSONS-s$SEED]   the store, reused when its stamp matches
#   CONNECTIONS ["4"]       connection counts to walk with, e.g. "1 2 4"
#   PAGE [10000]            scan.limit
#   RUNS [3]                runs of each walk; medians are reported
#   METHODS [all five]      compute methods
#   SERVER_THREADS []       arrearsd --threads (its own default when empty)
#   THREADS [0]             1: print each server thread's CPU seconds of every walk
#   ARREARSD [build/arrearsd]  the server to walk through (another build, to compare)
#   NO_BUILD [0]            1: use the binaries in build/ as they are
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=city.sh
. bench/lib.sh

PERSONS=${PERSONS:-1000000}
SEED=${SEED:-5}
CITY_DIR=${CITY_DIR:-/tmp/arrears-city-$PERSONS-s$SEED}
CONNECTIONS=${CONNECTIONS:-4}
PAGE=${PAGE:-10000}
RUNS=${RUNS:-3}
METHODS=${METHODS:-"arrears.compute years.compute retirement.check housing.check medical.status"}
SERVER_THREADS=${SERVER_THREADS:-}
THREADS=${THREADS:-0}
NO_BUILD=${NO_BUILD:-0}
ARREARSD=${ARREARSD:-build/arrearsd}
CITY=110000
AS_OF=20251110

if [ "$NO_BUILD" != 1 ]; then
	make --no-print-directory -j2 build/arrears build/arrearsd build/walk >&2
fi
for program in build/arrears "$ARREARSD" build/walk; do
	[ -x "$program" ] || die "$program is missing"
done

# ---- the city, generated once -------------------------------------------------

stamp="persons=$PERSONS seed=$SEED city=$CITY format=2"  # format: bump when the person value changes
if [ "$(cat "$CITY_DIR/stamp" 2>/dev/null)" != "$stamp" ]; then
	say "generating $PERSONS persons (seed $SEED) into $CITY_DIR/store"
	rm -rf "$CITY_DIR/store" "$CITY_DIR/stamp"
	mkdir -p "$CITY_DIR"
	build/arrears gen --persons "$PERSONS" --seed "$SEED" --city "$CITY" --data "$CITY_DIR/store" >&2
	echo "$stamp" >"$CITY_DIR/stamp"
fi
store_bytes=$(stat -c %s "$CITY_DIR/store/data.mdb")

# ---- the floor ------------------------------------------------------------------

raw=()
for run in $(seq "$RUNS"); do
	line=$(build/walk --raw "$CITY_DIR/store")
	raw+=("$(field seconds "$line")")
	say "raw scan $run/$RUNS: $line"
done
raw_s=$(median "${raw[@]}")

# ---- the server -----------------------------------------------------------------

log=$(mktemp)
"$ARREARSD" --listen 127.0.0.1:0 --data "$CITY_DIR/store" ${SERVER_THREADS:+--threads "$SERVER_THREADS"} \
	2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
trap 'exit 130' INT TERM
port=
for _ in $(seq 200); do
	port=$(sed -n 's/.*event=listen addr=127\.0\.0\.1 port=\([0-9]*\).*/\1/p' "$log")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] && wait_port "$port" "$pid" || { cat "$log" >&2; die "arrearsd did not start"; }

walk() { # walk METHOD CONNECTIONS: one run's key=value line; dies on any error
	local out
	if ! out=$(build/walk --connect "127.0.0.1:$port" --method "$1" --connections "$2" --page "$PAGE" \
		--as-of "$AS_OF" --city "$CITY" --pid "$pid" --expect "$PERSONS" 2>&1); then
		echo "$out" >&2
		die "build/walk failed on $1 (an error answer, a malformed one, or persons missing): see above"
	fi
	echo "$out"
}

# The server maps the store on its first walk: one untimed walk first.
say "warming the server's map: one medical.status walk"
walk medical.status 2 >/dev/null

for c in $CONNECTIONS; do
	rows=()
	for m in $METHODS; do
		secs=() cpus=() rss=()
		for run in $(seq "$RUNS"); do
			line=$(walk "$m" "$c")
			secs+=("$(field seconds "$line")") cpus+=("$(field server_cpu_s "$line")")
			rss+=("$(field server_rss_anon_kb "$line")")
			say "$m, $c connections, run $run/$RUNS: $line"
			if [ "$THREADS" = 1 ]; then say "  threads (name/tid:cpu s): $(field threads "$line")"; fi
		done
		s=$(median "${secs[@]}")
		rows+=("$(awk -v m="$m" -v s="$s" -v p="$PERSONS" -v raw="$raw_s" -v cpu="$(median "${cpus[@]}")" \
			-v rss="$(median "${rss[@]}")" \
			'BEGIN { printf "| `%s` | %.2f | %.0f | %.1f× | %.2f | %.0f |", m, s, p / s, (raw > 0 ? s / raw : 0), cpu, rss / 1024 }')")
	done
	echo
	echo "$PERSONS persons ($(awk -v b="$store_bytes" 'BEGIN { printf "%.2f GB", b / 1e9 }') store), raw LMDB cursor scan" \
		"$raw_s s (median of $RUNS); $c connections, scan pages of $PAGE, as of $AS_OF; $ARREARSD" \
		"${SERVER_THREADS:+--threads $SERVER_THREADS }commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + changes');" \
		"$(nproc) cores ($(uname -r)); medians of $RUNS runs."
	echo
	echo "| method | seconds | persons/s | × raw scan | server CPU s | server RssAnon MB |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${rows[@]}"
done
