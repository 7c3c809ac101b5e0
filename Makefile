# The two set-up commands of the README:
#   make run    the demo: the service on embedded defaults (memory store, console output,
#               dry-run actions) replays the bundled scenarios and shows what it does
#   make serve  the service itself on embedded defaults, on 127.0.0.1:8080
#   make test   everything CI runs: lint, types, import contracts and the whole test suite
# Both create .venv on first use; `make test` also installs the Debian packages the tests
# start (redis-server, prometheus, prometheus-alertmanager, and chromium for the browser
# test of the incident pages) when they are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEBIAN_PACKAGES := redis-server prometheus prometheus-alertmanager chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run serve test lint system-deps bench clean manifests lock docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/responder demo

serve: $(VENV)/.installed
	$(BIN)/responder serve

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	missing=$$(printf '%s\n' $$missing | sort -u | xargs); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(VENV)/.installed system-deps lint
	$(BIN)/pytest -n 2 --dist loadfile

# deploy/kubernetes/configmap-rules.yaml: the rule packs of rules/, byte for byte;
# deploy/kubernetes/monitoring/prometheusrule.yaml: deploy/prometheus/responder-alerts.yml
manifests: $(VENV)/.installed
	$(BIN)/python deploy/rules_configmap.py
	$(BIN)/python deploy/rbac.py
	$(BIN)/python deploy/prometheus_rule.py

# docs/configuration.md: the settings table, rendered from responder/settings.py (run it
# after changing a setting; tests/test_configuration_doc.py fails while it is stale)
docs: $(VENV)/.installed
	$(BIN)/python docs/configuration.py

# requirements.lock: what the image installs with `pip install --require-hashes`: the
# runtime dependencies of pyproject.toml at constraints.txt's pins, and the build's own
# (setuptools, wheel), each with the hashes of every file PyPI has for it. Run it after
# changing either file; tests/test_deploy.py fails when the lock misses a dependency.
lock: $(VENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --all-build-deps --strip-extras --no-emit-index-url \
	  --no-emit-trusted-host --no-emit-find-links -c constraints.txt \
	  -o requirements.lock pyproject.toml

bench: $(VENV)/.installed system-deps
	@command -v wrk >/dev/null || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
