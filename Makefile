# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLE := data/sample/manifest.jsonl
OUTPUT ?= outputs/sample

.PHONY: install browser run lint format test benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(SAMPLE): $(STAMP)
	$(PYTHON) -m pipeline fetch-sample --dest data/sample

run: $(STAMP) $(SAMPLE)
	rm -rf $(OUTPUT)
	$(PYTHON) -m pipeline diarize --manifest $(SAMPLE) --output $(OUTPUT) --evaluate --print-segments

# The report test opens report.html in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	    else echo "chromium not installed and apt-get unavailable: the report test will be skipped"; fi; }

# ruff lints and checks the format of the whole tree (pyproject.toml's [tool.ruff]) before the suite.
lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: $(STAMP)
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

# Two pytest-xdist workers, a test file each at a time (module fixtures are built once): a serial
# suite leaves a third of the two cores idle while Ray and CLI processes start (docs/RESULTS.md,
# "The test loop"). Each worker has its own local Ray and S3 endpoint. `make test TEST_WORKERS=0`
# runs it in one process.
TEST_WORKERS ?= 2
test: lint browser
	$(PYTHON) -m pytest -q -ra --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

clean:
	rm -rf outputs data/sample
