# Everything runs from the repository's own virtualenv (.venv), created on demand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help venv demo test unit integration local lint clean

help:
	@echo "make demo   run the example workflow through the whole pipeline in local mode"
	@echo "make test   lint + unit + integration + local end-to-end tests"

$(BIN)/miniwdl-fargate: plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e 'plugin[local,standalone]' -r requirements-dev.txt
	touch $@

venv: $(BIN)/miniwdl-fargate

demo: venv
	$(BIN)/miniwdl-fargate local run examples/hello/workflow.wdl examples/hello/inputs.json --seed-s3 examples/s3

lint: venv
	bash .ci/lint

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

local: venv
	$(BIN)/pytest tests/local

test: lint
	$(BIN)/pytest tests

clean:
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache
