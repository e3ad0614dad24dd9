# Two commands: `make run` (set up and start the app) and `make test` (set up and run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# A narrower selection for both passes of `make test`, as pytest's -m takes it: MARKS="not slow".
MARKS ?=
marks = $(if $(MARKS),$(1) and ($(MARKS)),$(1))

.PHONY: run test test-other-cpu bench clean

run: $(VENV)/.runtime-installed
	$(BIN)/python main.py $(ARGS)

# Two passes. The tests that start no model worker are Python, SQLite and PostgreSQL: they run on two
# processes (pytest-xdist), one per core. The worker tests then run one at a time: each worker already
# uses both cores, and the crash and soak tests expect the machine to themselves. Both passes always
# run; exit 5 (nothing selected, e.g. with MARKS) is not a failure.
test: $(VENV)/.dev-installed
	@status=0; \
	$(BIN)/python -m pytest -n 2 -m "$(call marks,not worker)" $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	$(BIN)/python -m pytest -m "$(call marks,worker)" $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

# The AMX Xeon where llama.cpp's extra CPU buffers crash, simulated on whatever CPU this is: every test
# that starts a model worker, then the bench sections that load models. .ci/run runs it after `test`.
test-other-cpu: $(VENV)/.dev-installed
	GEMMA_CHAT_SIMULATE_AMX_CRASH=1 $(BIN)/python -m pytest -m "$(call marks,worker)" $(PYTEST_ARGS)
	GEMMA_CHAT_SIMULATE_AMX_CRASH=1 $(BIN)/python -m bench --quick --only extra_buffers,generation --out bench/results/other-cpu.json

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench $(ARGS)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "gemma-chat needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The checkout itself, editable: the `gemma-chat` command, and imports of the package, not the folder.
$(VENV)/.runtime-installed: pyproject.toml requirements.txt $(VENV)/bin/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(VENV)/.runtime-installed

clean:
	rm -rf $(VENV)
