# Shell helpers the benchmark scripts share (bench/load.sh, bench/city.sh);
# sourced, with SCRIPT set to the script's name for messages.

say() { echo "$SCRIPT: $*" >&2; }
die() { say "$*"; exit 1; }

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts on 127.0.0.1:$1 while process $2 lives.
wait_port() {
	for _ in $(seq 200); do
		kill -0 "$2" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

field() { # field KEY LINE: the value of KEY=value in a line of key=value
	tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
