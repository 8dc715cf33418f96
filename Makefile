# arrears: `make run` and `make test` do everything on a fresh Debian 12 (as root).

CC      := gcc
CXX     := g++
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror
# Functions start on a cache line: the core's hot loops then keep their
# alignment whatever is linked before them (three more imported functions
# once moved core_years_compute by 48 bytes and cost a city walk 5-8%; BENCH.md).
ALIGN   := -falign-functions=64
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) $(ALIGN)
SAN     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
PYTHON  := /usr/bin/python3

# Debian packages the build and the tests need; installed only when missing.
PACKAGES := gcc g++ make libmsgpack-dev libmsgpuck-dev liblmdb-dev libjansson-dev libsodium-dev liburing-dev libcmocka-dev libbenchmark-dev libcsv-dev valgrind libmicrohttpd-dev python3 python3-msgpack python3-prometheus-client

# The request path every front end shares; the server links only this, its
# loop and cli/flags.c. JSON (proto/json.c), the generator, import and the
# client belong to the command-line tools.
RPC_SRC  := $(wildcard core/*.c fault/*.c store/*.c rpc/*.c) $(filter-out proto/json.c,$(wildcard proto/*.c))
TOOL_SRC := proto/json.c $(filter-out cli/arrears_main.c,$(wildcard cli/*.c)) $(wildcard gen/*.c import/*.c)
LIB_SRC  := $(RPC_SRC) $(TOOL_SRC)
HEADERS  := $(wildcard bench/*.h core/*.h fault/*.h proto/*.h store/*.h rpc/*.h io/*.h cli/*.h gen/*.h import/*.h)
RPC_OBJ  := $(RPC_SRC:%.c=build/obj/%.o)
LIB_OBJ  := $(LIB_SRC:%.c=build/obj/%.o)
SAN_RPC_OBJ := $(RPC_SRC:%.c=build/asan/obj/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=build/asan/obj/%.o)
RPC_LIBS := -lmsgpackc -lmsgpuck -llmdb -lsodium
LIBS     := $(RPC_LIBS) -ljansson -lcsv
UNIT_TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))

.PHONY: all deps run demo test unit sanitize e2e guard bench bench-load bench-city clean install uninstall
.SECONDARY:

all: build/arrears build/arrearsd

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

build/asan/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(SAN) -c -o $@ $<

build/arrears: $(LIB_OBJ) build/obj/cli/arrears_main.o
	$(CC) $(OPT) -o $@ $^ $(LIBS)

build/arrearsd: $(RPC_OBJ) build/obj/cli/flags.o build/obj/io/server.o build/obj/io/metrics.o build/obj/io/arrearsd_main.o
	$(CC) $(OPT) -o $@ $^ $(RPC_LIBS) -luring -lmicrohttpd -lpthread

build/test_%: build/obj/tests/test_%.o $(LIB_OBJ)
	$(CC) $(OPT) -o $@ $^ $(LIBS) -lcmocka

build/asan/arrears: $(SAN_OBJ) build/asan/obj/cli/arrears_main.o
	$(CC) $(SAN) -o $@ $^ $(LIBS)

build/asan/arrearsd: $(SAN_RPC_OBJ) build/asan/obj/cli/flags.o build/asan/obj/io/server.o build/asan/obj/io/metrics.o build/asan/obj/io/arrearsd_main.o
	$(CC) $(SAN) -o $@ $^ $(RPC_LIBS) -luring -lmicrohttpd -lpthread

build/asan/test_%: build/asan/obj/tests/test_%.o $(SAN_OBJ)
	$(CC) $(SAN) -o $@ $^ $(LIBS) -lcmocka

build/bench_core: bench/bench_core.cc build/obj/bench/fixture.o $(LIB_OBJ)
	$(CXX) -std=c++17 -O2 -g $(WARN) -o $@ $^ $(LIBS) -lbenchmark -lpthread

# The instruction guard's workloads, and the same with the core built at -O0:
# the deliberately slowed build the guard's own test must see fail.
SLOW_OBJ := $(patsubst build/obj/core/%,build/slow/obj/core/%,$(LIB_OBJ))
build/slow/obj/core/%.o: core/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O0 -c -o $@ $<

build/guard: build/obj/bench/guard.o build/obj/bench/fixture.o $(LIB_OBJ)
	$(CC) $(OPT) -o $@ $^ $(LIBS)

build/guard-slow: build/obj/bench/guard.o build/obj/bench/fixture.o $(SLOW_OBJ)
	$(CC) $(OPT) -o $@ $^ $(LIBS)

build/load: bench/load.c bench/mp.h
	@mkdir -p build
	$(CC) $(CFLAGS_ALL) -pthread -o $@ $<

build/walk: bench/walk.c bench/mp.h
	@mkdir -p build
	$(CC) $(CFLAGS_ALL) -o $@ $< -lmsgpackc -llmdb

unit: $(addprefix build/,$(UNIT_TESTS))
	@for t in $(UNIT_TESTS); do echo "== $$t"; ./build/$$t || exit 1; done

sanitize: $(addprefix build/asan/,$(UNIT_TESTS)) build/asan/arrears build/asan/arrearsd build/walk
	@for t in $(UNIT_TESTS); do echo "== $$t (address+undefined sanitizers)"; ./build/asan/$$t || exit 1; done
	$(PYTHON) tests/test_examples.py --eval build/asan/arrears
	$(PYTHON) tests/test_differential.py --eval build/asan/arrears --cases 300 --seed 7
	$(PYTHON) tests/test_store.py --arrears build/asan/arrears
	$(PYTHON) tests/test_messages.py --arrears build/asan/arrears
	$(PYTHON) tests/test_server.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears
	$(PYTHON) tests/test_hostile.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears
	$(PYTHON) tests/test_metrics.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears
	$(PYTHON) tests/test_ops.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears
	$(PYTHON) tests/faults.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears --scenarios 50

e2e: build/arrears build/arrearsd build/walk
	$(PYTHON) tests/test_examples.py --eval build/arrears
	$(PYTHON) tests/test_differential.py --eval build/arrears --cases 3000 --seed 1
	$(PYTHON) tests/test_store.py --arrears build/arrears
	$(PYTHON) tests/test_cli.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/test_messages.py --arrears build/arrears
	$(PYTHON) tests/test_client.py --arrears build/arrears
	$(PYTHON) tests/test_server.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/test_pyclient.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/test_hostile.py --arrearsd build/arrearsd --arrears build/arrears --memory-bounds
	$(PYTHON) tests/test_metrics.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/test_disk.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/test_ops.py --arrearsd build/arrearsd --arrears build/arrears
	$(PYTHON) tests/soak.py --arrearsd build/arrearsd --arrears build/arrears --rounds 20
	$(PYTHON) tests/faults.py --arrearsd build/arrearsd --arrears build/arrears --scenarios 200
	@echo "== the server again on the fallbacks for kernels before 6.1 (plain ring, single receives)"
	ARREARSD_RING=plain $(PYTHON) tests/test_server.py --arrearsd build/arrearsd --arrears build/arrears

test: deps
	$(MAKE) --no-print-directory unit e2e sanitize fuzz-brief guard

# Instructions per slot of the core and the request path against bench/budgets.json.
guard: build/guard build/guard-slow
	$(PYTHON) tests/test_guard.py

# The server on the README's defaults, with a small generated city loaded.
# make run HOST=:: PORT=7421 DATA=/srv/arrears (HOST: an address or a name).
DATA ?= data
HOST ?= 127.0.0.1
PORT ?= 7420
LISTEN = $(if $(findstring [,$(HOST)),$(HOST),$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST))):$(PORT)
run: deps build/arrears build/arrearsd
	@if [ ! -f $(DATA)/data.mdb ]; then \
	  echo "generating a city of 10,000 persons into $(DATA)/ (arrears gen --seed 1 --city 110000)"; \
	  ./build/arrears gen --persons 10000 --seed 1 --city 110000 --data $(DATA); \
	fi
	@echo "serving $(DATA)/ on $(LISTEN); in another terminal try:"
	@echo "  build/arrears call --connect $(LISTEN) arrears.compute '{\"as_of\": 20251110, \"scan\": {\"after\": null, \"limit\": 3}}'"
	@echo "  build/arrears show 110101195501010013 --as-of 20251110 --connect $(LISTEN)"
	./build/arrearsd --listen $(LISTEN) --data $(DATA)

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the two programs, their
# man pages, the systemd unit and /etc/default/arrearsd (kept when present).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= /etc/systemd/system
SYSCONFDIR ?= /etc
install: build/arrears build/arrearsd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/default
	install -m 755 build/arrears build/arrearsd $(DESTDIR)$(BINDIR)/
	install -m 644 dist/arrears.1 $(DESTDIR)$(MANDIR)/man1/arrears.1
	install -m 644 dist/arrearsd.8 $(DESTDIR)$(MANDIR)/man8/arrearsd.8
	sed 's|@BINDIR@|$(BINDIR)|g' dist/arrearsd.service.in > $(DESTDIR)$(UNITDIR)/arrearsd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/arrearsd.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/arrearsd ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/default/arrearsd"; \
	else install -m 644 dist/arrearsd.default $(DESTDIR)$(SYSCONFDIR)/default/arrearsd; fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload; echo "then: systemctl enable --now arrearsd"; fi

# Leaves /etc/default/arrearsd (edited by the admin) and the store in /var/lib/arrears.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/arrears $(DESTDIR)$(BINDIR)/arrearsd $(DESTDIR)$(MANDIR)/man1/arrears.1 \
	  $(DESTDIR)$(MANDIR)/man8/arrearsd.8 $(DESTDIR)$(UNITDIR)/arrearsd.service
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload; fi

# The Python client's example (examples/client_example.py) against a server
# on an ephemeral port and a fresh temporary store, stopped afterwards.
demo: build/arrearsd
	@tmp=$$(mktemp -d); ./build/arrearsd --listen 127.0.0.1:0 --data $$tmp/store 2>$$tmp/log & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$tmp' EXIT; port=; \
	for i in $$(seq 200); do \
	  port=$$(sed -n 's/.*event=listen addr=127\.0\.0\.1 port=\([0-9]*\).*/\1/p' $$tmp/log); \
	  [ -n "$$port" ] && break; sleep 0.05; \
	done; \
	if [ -z "$$port" ]; then cat $$tmp/log; exit 1; fi; \
	$(PYTHON) examples/client_example.py 127.0.0.1:$$port

bench: deps build/bench_core
	./build/bench_core --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

# The server against redis-server under the same load (installs redis-server if missing).
bench-load: deps build/arrears build/arrearsd build/load
	NO_BUILD=1 bash bench/load.sh

# A whole city through the server, each compute method, against a raw LMDB
# scan of the same store (bench/city.sh; PERSONS, CONNECTIONS, RUNS, CITY_DIR).
bench-city: deps build/arrears build/arrearsd build/walk
	NO_BUILD=1 bash bench/city.sh

include tests/soak.mk tests/faults.mk

# libFuzzer targets: make fuzz (FUZZ_S seconds each), make fuzz-brief (a few seconds each, in make test).
include tests/fuzz/fuzz.mk

clean:
	rm -rf build
