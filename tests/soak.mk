# Soak and full-disk tests (issue 8); the top Makefile includes this fragment.
#   make soak [ROUNDS=1000] [SEED=n]   SIGKILL rounds under idempotent writes
#   make soak-brief                    the same, 20 rounds (make test runs it)
#   make disk-test                     a real full disk: a 64 MiB tmpfs (root)

ROUNDS ?= 1000
SOAK_ARGS = --arrearsd build/arrearsd --arrears build/arrears $(if $(SEED),--seed $(SEED))

.PHONY: soak soak-brief disk-test

soak: build/arrearsd build/arrears
	$(PYTHON) tests/soak.py $(SOAK_ARGS) --rounds $(ROUNDS)

soak-brief: build/arrearsd build/arrears
	$(PYTHON) tests/soak.py $(SOAK_ARGS) --rounds 20

disk-test: build/arrearsd build/arrears
	$(PYTHON) tests/test_disk.py --arrearsd build/arrearsd --arrears build/arrears
