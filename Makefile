# The README's commands. `make env` is idempotent: the first run on a machine
# builds .venv/ (~20 min, mostly compiling mmcv's ops); later runs return at once.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test test-fast sizes lock clean

env:
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

sizes: env
	$(PY) tools/get_flops.py --all

# Re-pin requirements/lock.txt from the current .venv.
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^mmcv-lite' > requirements/lock.txt

clean:
	rm -rf .venv build *.egg-info .pytest_cache
