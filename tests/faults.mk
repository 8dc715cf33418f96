# Deterministic fault injection (issue 8); the top Makefile includes this fragment.
#   make faults [SCENARIOS=2000] [SEED=n]   seeded scenarios under ARREARSD_FAULTS (tests/faults.py)
#   make faults-brief [SEED=n]              the same, 200 scenarios (make test runs it)
#   make faults-asan [SEED=n]               50 scenarios on the sanitizer build
# A failing scenario prints its seed and the command that replays it alone
# (tests/faults.py --seed S --scenarios 1 ...).

SCENARIOS ?= 2000
FAULTS_SEED = $(if $(SEED),--seed $(SEED))

.PHONY: faults faults-brief faults-asan

faults: build/arrearsd build/arrears
	$(PYTHON) tests/faults.py --arrearsd build/arrearsd --arrears build/arrears --scenarios $(SCENARIOS) $(FAULTS_SEED)

faults-brief: build/arrearsd build/arrears
	$(PYTHON) tests/faults.py --arrearsd build/arrearsd --arrears build/arrears --scenarios 200 $(FAULTS_SEED)

faults-asan: build/asan/arrearsd build/asan/arrears
	$(PYTHON) tests/faults.py --arrearsd build/asan/arrearsd --arrears build/asan/arrears --scenarios 50 $(FAULTS_SEED)
