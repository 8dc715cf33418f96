# arrears: `make run` and `make test` do everything on a fresh Debian 12 (as root).

CC      ?= cc
CXX     ?= c++
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS)
SAN     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
PYTHON  := /usr/bin/python3

# Debian packages the build and the tests need; installed only when missing.
PACKAGES := gcc g++ make libmsgpack-dev libcmocka-dev libbenchmark-dev python3 python3-msgpack

CORE_SRC  := $(wildcard core/*.c)
PROTO_SRC := $(wildcard proto/*.c)
IO_SRC    := io/dispatch.c io/eval.c
LIB_SRC   := $(CORE_SRC) $(PROTO_SRC) $(IO_SRC)
HEADERS   := $(wildcard core/*.h proto/*.h io/*.h)
LIBS      := -lmsgpackc

.PHONY: all deps run test unit sanitize e2e bench clean

all: build/arrears

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build/arrears: $(LIB_SRC) io/arrears_main.c $(HEADERS) | build
	$(CC) $(ALL_CFLAGS) -o $@ $(LIB_SRC) io/arrears_main.c $(LIBS)

build/test_%: tests/test_%.c $(LIB_SRC) $(HEADERS) | build
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_SRC) $(LIBS) -lcmocka

build/asan/arrears: $(LIB_SRC) io/arrears_main.c $(HEADERS) | build/asan
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(SAN) -o $@ $(LIB_SRC) io/arrears_main.c $(LIBS)

build/asan/test_%: tests/test_%.c $(LIB_SRC) $(HEADERS) | build/asan
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(SAN) -o $@ $< $(LIB_SRC) $(LIBS) -lcmocka

build/bench_core: bench/bench_core.cc $(CORE_SRC) core/core.h core/internal.h | build
	$(CC) $(ALL_CFLAGS) -O3 -c $(CORE_SRC)
	@mkdir -p build/obj && mv $(notdir $(CORE_SRC:.c=.o)) build/obj/
	$(CXX) -std=c++17 -O3 $(WARN) -o $@ $< $(addprefix build/obj/,$(notdir $(CORE_SRC:.c=.o))) -lbenchmark -lpthread

build build/asan:
	mkdir -p $@

UNIT_TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))

unit: $(addprefix build/,$(UNIT_TESTS))
	@for t in $(UNIT_TESTS); do echo "== $$t"; ./build/$$t || exit 1; done

sanitize: $(addprefix build/asan/,$(UNIT_TESTS)) build/asan/arrears
	@for t in $(UNIT_TESTS); do echo "== $$t (asan+ubsan)"; ./build/asan/$$t || exit 1; done
	$(PYTHON) tests/test_examples.py --eval build/asan/arrears
	$(PYTHON) tests/test_differential.py --eval build/asan/arrears --cases 300 --seed 7

e2e: build/arrears
	$(PYTHON) tests/test_examples.py --eval build/arrears
	$(PYTHON) tests/test_differential.py --eval build/arrears --cases 3000 --seed 1

test: deps
	$(MAKE) --no-print-directory unit e2e sanitize

run: deps build/arrears
	$(PYTHON) examples/demo.py build/arrears

bench: deps build/bench_core
	./build/bench_core --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

clean:
	rm -rf build
