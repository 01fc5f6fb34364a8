# Quick start: `make demo` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# npm's sharp, installed from bench/sharp/package-lock.json (set before the rules that need it).
SHARP_STAMP := bench/sharp/node_modules/.installed
STAMP := $(VENV)/.installed

.PHONY: venv demo dev test lint format clean constraints bench chaos image image-smoke tools

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

test: lint tools .venv-checkov $(SHARP_STAMP)
	$(BIN)/python -m pytest -n 2 tests $(patsubst %/pyproject.toml,%/tests,$(PLUGINS))

# promtool checks and unit-tests the alert rules (tests/deploy/test_alert_rules.py): Debian's
# prometheus package, installed when missing, without its recommends, and with a policy-rc.d
# that keeps the package's service from starting (removed again unless one was there before).
tools:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "make tools: promtool is missing; install Debian's 'prometheus' package as root (apt-get install --no-install-recommends prometheus)" >&2; exit 1; \
	  fi; \
	  guard=; [ -e /usr/sbin/policy-rc.d ] || { guard=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > $$guard; chmod +x $$guard; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; rc=$$?; \
	  [ -z "$$guard" ] || rm -f $$guard; \
	  [ $$rc = 0 ] || exit $$rc; \
	  if command -v pgrep >/dev/null && pgrep -x prometheus >/dev/null; then \
	    echo "make tools: a prometheus server is running; only promtool is needed (systemctl disable --now prometheus)" >&2; \
	  fi; \
	}
	@# The bench's video reference (tests/bench check its command against the stage's plan).
	@command -v ffmpeg >/dev/null || { \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "make tools: ffmpeg is missing; install Debian's 'ffmpeg' package as root" >&2; exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg; \
	}

# npm's sharp, the bench's photo reference (bench/sharp/package-lock.json); tests/bench run it.
$(SHARP_STAMP): bench/sharp/package-lock.json
	command -v npm >/dev/null || { echo "the sharp reference needs Node.js 20+ and npm" >&2; exit 1; }
	npm ci --prefix bench/sharp --no-audit --no-fund --loglevel=error
	touch $@


# checkov scans deploy/ecs/template.yaml in `make test`; its dependencies do not resolve beside
# the project's pins, so it lives in a virtualenv of its own (tests/deploy finds it there).
CHECKOV_VERSION := 3.3.30
.PHONY: .venv-checkov
.venv-checkov: .venv-checkov/bin/checkov
.venv-checkov/bin/checkov: deploy/ecs/checkov-constraints.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -c deploy/ecs/checkov-constraints.txt 'checkov==$(CHECKOV_VERSION)'
	touch $@

# The fault-injection suite at full size (a small run is part of `make test`): real workers on
# the emulated stack behind a fault proxy, killed and fed duplicates; see docs/chaos.md.
chaos: venv
	$(BIN)/python -m tests.chaos.driver --uploads 150 --workers 3 --fault-rate 0.1 --kills 10 \
	  --duplicates 25 --malformed 6 --targeted 3 --seed 7 --deadline 900 $(CHAOS)

# Benchmarks need real photographs (scikit-image), npm's sharp as a photo reference (from
# bench/sharp/package-lock.json) and, as the video reference only, the ffmpeg command line from
# Debian; the product itself never runs sharp or ffmpeg.
bench: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(MAKE) --no-print-directory tools $(SHARP_STAMP)
	$(BIN)/python -m bench $(BENCH)

# The API Lambda's zip (deploy/ecs/README.md, "Build the API Lambda"): manylinux wheels for the
# function's runtime, less the boto3 it carries; the same source gives the same bytes.
.PHONY: lambda
lambda: venv
	$(BIN)/python deploy/ecs/lambda_build.py --out dist/mediamill-api.zip

# The worker's image (deploy/ecs/Dockerfile; see deploy/ecs/README.md): docker when a daemon
# answers, else buildah on a bookworm base made once with debootstrap. BASE_IMAGE=... overrides.
image:
	@if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then \
	  need=""; for tool in buildah debootstrap; do command -v $$tool >/dev/null || need="$$need $$tool"; done; \
	  if [ -n "$$need" ] && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	  elif [ -n "$$need" ]; then \
	    echo "make image: no docker daemon, and buildah needs:$$need (apt-get install, as root)"; exit 1; \
	  fi; \
	fi
	deploy/ecs/build-image.sh

# The built image's worker against `mediamill dev --no-worker` on loopback: an upload to READY,
# exit 0 on SIGTERM; prints the timings. Root and buildah (chroot isolation, host network).
image-smoke: venv image
	$(BIN)/python deploy/ecs/smoke.py $(SMOKE)

clean:
	rm -rf $(VENV) demo-output bench/results.json bench/sharp/node_modules .pytest_cache .mypy_cache .ruff_cache

constraints: venv
	{ echo '# The tested set of every dependency, pinned. Regenerate with `make constraints` after changing pyproject.toml.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^mediamill'; } > constraints.txt
