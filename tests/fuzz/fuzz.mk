# libFuzzer targets (issue 8), included by the top Makefile after LIB_SRC, HEADERS, LIBS and WARN.
#
#   make fuzz         each target for FUZZ_S seconds (default 60), one after another; fails on a crash
#   make fuzz-brief   each target a few seconds over its seed corpus (make test runs it)
#
# Targets live in tests/fuzz/fuzz_<name>.c, their seeds in tests/fuzz/corpus/<name>/ (written by
# tests/fuzz/seeds.py; crashing inputs added beside them). New inputs libFuzzer finds go to
# build/fuzz/corpus/<name>/, crashes to build/fuzz/artifacts/<name>/; the committed seeds stay small.
# One target: make fuzz-run-<name> [FUZZ_TIME=S]. Replay one input: build/fuzz/fuzz_<name> FILE.
# Each target's stats land in build/fuzz/<name>.log (stat::number_of_executed_units, average_exec_per_sec).

FUZZ_CC       := clang
FUZZ_PACKAGES := clang libclang-rt-14-dev
FUZZ_S        ?= 60
FUZZ_BRIEF_S  ?= 5
FUZZ_TIME     ?= $(FUZZ_S)
FUZZ_CFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_TARGETS  := request request_store frame timeline policy csv_row
FUZZ_OBJ      := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
# -max_len per target: a request stream holds several frames; a CSV line is at most 4096 bytes.
FUZZ_LEN_request       := 16384
FUZZ_LEN_request_store := 16384
FUZZ_LEN_frame         := 4096
FUZZ_LEN_timeline      := 4096
FUZZ_LEN_policy        := 8192
FUZZ_LEN_csv_row       := 4200

.PHONY: fuzz fuzz-brief fuzz-build fuzz-deps

fuzz-deps: # the top Makefile's deps, for clang and its fuzzer runtime
	@$(MAKE) --no-print-directory deps PACKAGES="$(FUZZ_PACKAGES)"

build/fuzz/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_OBJ) $(HEADERS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJ) $(LIBS)

fuzz-build: fuzz-deps
	$(MAKE) --no-print-directory $(FUZZ_BINS)

# One target for FUZZ_TIME seconds; its log in build/fuzz/<name>.log, the tail shown on a crash.
fuzz-run-%: build/fuzz/fuzz_%
	@mkdir -p build/fuzz/corpus/$* build/fuzz/artifacts/$*
	@echo "== fuzz_$* for $(FUZZ_TIME) s"
	@./build/fuzz/fuzz_$* -max_total_time=$(FUZZ_TIME) -max_len=$(FUZZ_LEN_$*) -rss_limit_mb=2048 -timeout=25 \
	  -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$*/ build/fuzz/corpus/$* tests/fuzz/corpus/$* \
	  2>build/fuzz/$*.log || { tail -n 60 build/fuzz/$*.log; exit 1; }
	@grep -h "stat::number_of_executed_units\|stat::average_exec_per_sec" build/fuzz/$*.log | tr '\n' ' '; echo

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t FUZZ_TIME=$(FUZZ_S) || exit 1; done

fuzz-brief: fuzz-build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t FUZZ_TIME=$(FUZZ_BRIEF_S) || exit 1; done
