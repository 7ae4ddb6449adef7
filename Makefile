# The README's commands. `make env` is idempotent: the first run on a machine
# builds .venv/ (~20 min, mostly compiling mmcv's ops); later runs return at once.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test test-fast test-e2e test-compile sizes lock clean

env:
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

# One pytest-xdist worker per core, each with one torch thread (tests/conftest.py):
# OpenMP threads stall each other whenever another process takes a core, and the
# suite starts many (tools run as subprocesses); slow tests go first (conftest).
XDIST := -n auto --dist worksteal

test: env
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest $(XDIST) -m "not slow and not compile_all" $(PYTEST_ARGS)

# The end-to-end runs marked e2e (the main job on shortened schedules with its detector
# deployed, a fine-tune against training from scratch, two families' trained
# deployments): about 10 minutes of both cores, so not part of `make test`; CI runs
# them after it. One process, whose torch threads the demo splits into its side-by-side runs.
test-e2e: env
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

test-compile: env
	$(PY) -m pytest $(XDIST) -m compile_all tests/test_fast_paths.py $(PYTEST_ARGS)

sizes: env
	$(PY) tools/get_flops.py --all --update-docs

# Re-pin requirements/lock.txt from a .venv made by `make env` (plus any new pins).
# mmcv is installed from the locally built wheel; its pin is kept by name.
lock:
	{ $(PY) -m pip freeze --exclude-editable | grep -v -e ' @ ' -e '^mmcv'; \
	  echo 'mmcv==2.1.0'; } | sort -f > requirements/lock.txt

clean:
	rm -rf .venv build *.egg-info .pytest_cache
