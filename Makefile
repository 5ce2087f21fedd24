# The two set-up commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint clean constraints

# constraints.txt: the exact versions the project is tested with, so a fresh install next month
# resolves the same set (`make constraints` regenerates it).
$(STAMP): setup.py constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# serve: the HTTP look service (ctl_keras/service) and its tests; milvus: the Milvus backend,
	# whose tests run against a real Milvus Lite and a real Milvus server
	$(BIN)/python -m pip install -c constraints.txt -e ".[test,faiss,serve,milvus]"
	# A real Milvus server for tests/retrieval/test_milvus_server.py (the --milvus_uri path): the milvus
	# package's standalone server, in a venv of its own (it pins its own dependencies); x86_64 wheels only.
	if [ "$$(uname -m)" = x86_64 ] && [ ! -x .venv-milvus/bin/milvus-server ]; then \
	  $(PYTHON) -m venv .venv-milvus && .venv-milvus/bin/python -m pip install -q milvus==2.3.5; fi
	touch $(STAMP)

install: $(STAMP)

# Main job on the embedded synthetic dataset: build, train (frozen-feature cache), evaluate,
# export both towers, index the catalog and recommend for one test scene.
demo: install
	$(BIN)/python -m ctl_keras.demo

# Lint the project's own files (not whatever else lies in the tree), then every test.
lint: install
	$(BIN)/ruff check ctl_keras tests benchmarks

test: lint
	$(BIN)/python -m pytest tests -q

# The inner loop: lint + every test not marked slow (no subprocess, integration or training test over ~4 s).
test-fast: lint
	$(BIN)/python -m pytest tests -q -m "not slow"

# After adding or upgrading a dependency (and running the tests): pin what the venv now holds.
# `pip list --format=freeze` gives name==version even for a package installed from a local file;
# ctl_keras itself (editable) and pip's own tooling are left out.
constraints:
	@test -x $(BIN)/python || { echo "no $(BIN)/python: run make install first"; exit 1; }
	{ echo "# Exact versions ctl_keras is tested with; regenerate with 'make constraints'."; \
	  $(BIN)/python -m pip list --format=freeze --exclude-editable \
	    --exclude pip --exclude setuptools --exclude wheel --exclude ctl_keras; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf runs export/demo tf_records/synthetic .venv-milvus
