# `make demo` and `make test` work from a fresh clone: they create .venv and install everything.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aitune-ci demo

# The HTML report test drives a real headless Chromium (Debian's package; CI runs as root).
/usr/bin/chromium:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test: $(STAMP) /usr/bin/chromium
	$(PY) -m pytest

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu

lint: $(STAMP)
	$(VENV)/bin/ruff check aitune_ci tests bench

clean:
	rm -rf $(VENV) .aitune-cache build *.egg-info
