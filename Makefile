# Every target creates or reuses .venv itself, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA ?= $(CURDIR)/var
# Extras installed into .venv. .ci/run adds `oracle` (Meta's vpdq binding, a test oracle that
# needs FFmpeg's dev packages); `make run` and `make test` never need it (its tests skip).
EXTRAS ?= dev,nudenet

.PHONY: run serve test lint typecheck unit docs docs-check bench fuzz abuse screenshots clean

$(STAMP): pyproject.toml setup.py src/dignity/matching/_mihcore.c src/dignity/derivatives/_shortlist.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install --quiet --no-deps 'invisible-watermark==0.2.0'
	touch $(STAMP)

venv: $(STAMP)

# The embedded default: SQLite in ./var, a demo bank of generated benign images and the matches
# of edited copies, then the HTTP service on 127.0.0.1:8080 (Ctrl-C stops it).
run: $(STAMP)
	DIGNITY_DATA_DIR=$(DATA) DIGNITY_PLATFORM_NAME="Example Pics (demo)" $(BIN)/dignity demo
	DIGNITY_DATA_DIR=$(DATA) DIGNITY_PLATFORM_NAME="Example Pics (demo)" $(BIN)/dignity serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy

# Two xdist workers (CI's machine has two cores): each test file runs whole on one worker, and
# the tests on the shared RabbitMQ/Redis run one at a time (tests/conftest.py). PYTEST_WORKERS=0
# runs in one process; `python -m pytest path/to/test.py` runs without xdist as before.
PYTEST_WORKERS ?= 2
unit: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The documentation site (mkdocs.yml, docs/): `make docs` builds it into build/site/ (ignored);
# `make test` builds it with --strict into a temporary folder (not --quiet: that hides the
# warnings --strict counts), so a broken link, a missing
# anchor or a page left out of the nav fails the run. The API reference is generated from the
# app's OpenAPI schema by docs/hooks.py at build time.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-check: $(STAMP)
	@site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && \
		NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$site"

test: lint typecheck docs-check unit

# A longer schemathesis run than the bounded one inside `make test`.
fuzz: $(STAMP)
	DIGNITY_FUZZ_EXAMPLES=100 DIGNITY_FUZZ_SECONDS=900 $(BIN)/python -m pytest -q tests/integration/test_openapi_fuzz.py

# The abuse suite (tests/abuse/, issue 18) at the issue's full sizes: 30k-page TIFFs, 1M-frame
# GIFs, 9999 x 10000 mode-I/F TIFFs four at once, 200 concurrent lookups and PIN guesses, 1,000
# half-sent connections. `make test` runs the same tests at small sizes. Prints each target.
abuse: $(STAMP)
	DIGNITY_ABUSE_FULL=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/abuse

bench: $(STAMP)
	$(BIN)/python bench/hashing.py
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/watermark.py
	$(BIN)/python bench/derivatives.py
	$(BIN)/python bench/regions.py
	$(BIN)/python bench/video.py

# The documentation's screenshots (docs/reviewer-guide.md): the browser tests on SQLite, then docs/make_screenshots.py.
screenshots: $(STAMP)
	$(BIN)/python -m pytest -q -k "sqlite" tests/integration/test_takedown_e2e.py \
		"tests/integration/test_takedown_requests.py::test_intake_and_status_pages_by_keyboard"
	$(BIN)/python docs/make_screenshots.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
