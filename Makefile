# The two set-up commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test,faiss]"
	# the Milvus backend (issue 21): its tests run against a real Milvus Lite
	$(BIN)/python -m pip install -e ".[milvus]"
	touch $(STAMP)

install: $(STAMP)

# Main job on the embedded synthetic dataset: build, train (frozen-feature cache), evaluate,
# export both towers, index the catalog and recommend for one test scene.
demo: install
	$(BIN)/python -m ctl_keras.demo

# Lint (ruff.toml), then every test; `$(BIN)/python -m pytest -m "not slow"` is the fast inner loop.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests -q

clean:
	rm -rf runs export/demo tf_records/synthetic
