# Quick start: `make demo` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP := $(VENV)/.installed

.PHONY: venv demo dev test lint format clean constraints bench chaos

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# Plugins install the way a user installs one: a plain pip install of their directory.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --force-reinstall --no-deps $(patsubst %/pyproject.toml,./%,$(PLUGINS))
	touch $@

demo: venv
	$(BIN)/mediamill demo --out demo-output

dev: venv
	$(BIN)/mediamill dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy mediamill_core worker stages
	$(BIN)/mypy api_lambda plugins
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint .venv-checkov
	$(BIN)/python -m pytest -n 2 tests $(patsubst %/pyproject.toml,%/tests,$(PLUGINS))

# checkov scans deploy/ecs/template.yaml in `make test`; its dependencies do not resolve beside
# the project's pins, so it lives in a virtualenv of its own (tests/deploy finds it there).
CHECKOV_VERSION := 3.3.30
.PHONY: .venv-checkov
.venv-checkov: .venv-checkov/bin/checkov
.venv-checkov/bin/checkov:
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'

# The fault-injection suite at full size (a small run is part of `make test`): real workers on
# the emulated stack behind a fault proxy, killed and fed duplicates; see docs/chaos.md.
chaos: venv
	$(BIN)/python -m tests.chaos.driver --uploads 150 --workers 3 --fault-rate 0.1 --kills 10 \
	  --duplicates 25 --malformed 6 --targeted 3 --seed 7 --deadline 900 $(CHAOS)

# Benchmarks need real photographs (scikit-image) and, as the video reference only, the ffmpeg
# command line from Debian; the product itself never runs ffmpeg.
bench: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	command -v ffmpeg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; } \
	  || { echo "make bench: the ffmpeg reference needs 'apt-get install ffmpeg' (root)"; exit 1; }
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) demo-output bench/results.json .pytest_cache .mypy_cache .ruff_cache

constraints: venv
	{ echo '# The tested set of every dependency, pinned. Regenerate with `make constraints` after changing pyproject.toml.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^mediamill'; } > constraints.txt
