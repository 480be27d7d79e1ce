# `make demo` and `make test` work from a fresh clone: they create .venv and install everything.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu gpu-wheels lint clean

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

# aitune-ci baseline-pr sends *.ait through Git LFS; its LFS test needs the real git-lfs.
/usr/bin/git-lfs:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y git-lfs

# Two parts: most tests on $(TEST_WORKERS) xdist workers (a compile mostly keeps one core busy), a
# module per worker so its compiled fixtures are built once; then the `quiet` tests alone, because they
# assert on latency measured here and another worker's load is exactly what the plugin declines to judge.
# Both parts always run; either failing fails the target.
TEST_WORKERS ?= 2
test: $(STAMP) /usr/bin/chromium /usr/bin/git-lfs
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not gpu and not quiet"; parallel=$$?; \
	$(PY) -m pytest -m "not gpu and quiet"; quiet=$$?; \
	echo "make test: parallel part exit $$parallel, quiet part exit $$quiet"; \
	[ $$parallel -eq 0 ] && [ $$quiet -eq 0 ]

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu

# The lent GPU machines have no torchao and no registry: fetch the wheel bench/run_gpu_suite.sh
# installs there (the device call carries .whl; torchao 0.16.0 is the one seen working with their torch 2.11).
gpu-wheels:
	mkdir -p "$$(dirname "$$(git rev-parse --git-path info/exclude)")"
	grep -qx '/.whl/' "$$(git rev-parse --git-path info/exclude)" 2>/dev/null || echo /.whl/ >> "$$(git rev-parse --git-path info/exclude)"
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl torchao==0.16.0

lint: $(STAMP)
	$(VENV)/bin/ruff check aitune_ci tests bench

clean:
	rm -rf $(VENV) .aitune-cache build *.egg-info
