# Everything runs from the repository's own virtualenv (.venv), created on demand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The tests run in TEST_WORKERS processes (pytest-xdist; tests/conftest.py keeps the tier order in
# each, and each has its own local stack): the end-to-end tests mostly wait on their runs.
# TEST_WORKERS=0 runs them in the one pytest process. 3 on the 2-core machines the tests run on
# (at 4 on a loaded machine, test_many_runs twice saw a task STOPPED without its exit code).
TEST_WORKERS ?= 3
PYTEST_WORKERS = -n $(TEST_WORKERS)
# more pytest options for `make test`, e.g. PYTEST_ARGS=--durations=20
PYTEST_ARGS ?=
# Python keeps the bytecode it compiles (.pyc, in .venv and the checkout's __pycache__ folders),
# whatever the environment says: .venv is installed --no-compile, and the tests start hundreds of
# interpreters (Lambda environments, drivers, commands), each of which would otherwise compile
# every module it imports again
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help venv demo test soak unit integration local containers browser screenshot lint image push-image clean bench bench-10k bench-fair bench-transfers bench-local bench-local-ecs bench-moto-server bench-tests openapi docs

help:
	@echo "make demo   run the example workflow through the whole pipeline in local mode"
	@echo "make test   lint + unit + integration + local end-to-end tests"
	@echo "make push-image   build the driver image and push it to ECR (needs Docker and AWS credentials)"
	@echo "make bench  the aws_fargate backend at scale against a simulated ECS with the account quotas (about 3 min)"
	@echo "make bench-10k  the same with 10,000 tasks in one run (about 10 min)"
	@echo "make bench-fair  10 drivers of 500 tasks each sharing one account's quotas (about 5 min)"
	@echo "make bench-transfers  many small objects down and up, one at a time vs in parallel (under 1 min)"
	@echo "make bench-local  what local mode adds to a run: plain miniwdl vs local mode, hello and a 50-task scatter (about 1 min)"
	@echo "make bench-local-ecs  what a local stack's DescribeTasks costs as its tasks pile up: moto's lookup vs local mode's (under 1 min)"
	@echo "make bench-moto-server  the CPU local mode's moto server spends on a request: moto's own threaded server vs local mode's kept threads (under 1 min)"
	@echo "make bench-tests  how long make test takes on a clean clone of this checkout's HEAD (about 3 min)"
	@echo "make docs   docs/configuration.md from the packaged aws_fargate.cfg"
	@echo "make screenshot   docs/report-screenshot.png: the run report in headless Chromium (apt-get install chromium)"

# Built with uv (.ci/uv: about 3 s where pip took 13), or with pip when uv cannot be had.
# VENV_COMPILE=1 (make test sets it) compiles the packages' bytecode once installed, and the
# project's folders (.ci/bytecode: all but what nothing of ours imports; about 5 s and 7 s of CPU
# on two cores for the packages, where uv's --compile-bytecode of all of .venv took 14 s and 27 s): the tests
# start many interpreters at once (three workers, each with its fork servers and `local run`s), and
# left to each module's first import, a module was compiled by every process importing it before
# the first one wrote its .pyc (a clean clone's suite took 507 s of CPU, 434 s with its 2,182
# imported modules compiled first). Otherwise (make demo) each module is compiled at its first
# import: a fresh clone's first demo took 14.5 s so, 24.5 s compiling all of .venv first. (--seed: the venv has
# pip, for whoever adds to it by hand; --no-python-downloads: the venv is of $(PYTHON), never of a
# Python uv would fetch.)
VENV_PACKAGES := -e 'plugin[local,standalone]' -r requirements-dev.txt
VENV_COMPILE ?=
$(BIN)/miniwdl-fargate: plugin/pyproject.toml
	@if uv=$$(PYTHON=$(PYTHON) bash .ci/uv) && "$$uv" venv --quiet --allow-existing --seed --no-python-downloads --python $(PYTHON) $(VENV) \
	  && "$$uv" pip install --quiet --python $(BIN)/python $(VENV_PACKAGES); then :; \
	else echo "make venv: building .venv with pip (uv: see above)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) \
	  && $(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet --no-compile $(VENV_PACKAGES); fi
	$(if $(VENV_COMPILE),bash .ci/bytecode)
	touch $@

venv: $(BIN)/miniwdl-fargate

# The example's tasks ask for ubuntu:22.04. By default the demo runs them as sandboxed host
# processes, which needs nothing but util-linux; `make demo DEMO_ENGINE=auto` runs them in their
# image with Podman or Docker instead (pull it first: local mode never pulls on its own).
DEMO_ENGINE ?= none
demo: venv
	$(BIN)/miniwdl-fargate local run examples/hello/workflow.wdl examples/hello/inputs.json --seed-s3 examples/s3 --engine $(DEMO_ENGINE)

lint: venv
	bash .ci/lint

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration $(PYTEST_WORKERS)

local: venv
	$(BIN)/pytest tests/local $(PYTEST_WORKERS)

# the run report in headless Chromium (Debian's chromium: `sudo bash .ci/browser`; skipped without it)
browser: venv
	$(BIN)/pytest tests/browser

# docs/report-screenshot.png, from the browser test's example run
screenshot: venv
	MINIWDL_FARGATE_REQUIRE_BROWSER=1 MINIWDL_FARGATE_SCREENSHOT=$(CURDIR)/docs/report-screenshot.png $(BIN)/pytest tests/browser -n 0 -q

# WDL tasks in real images (podman or docker; `sudo bash .ci/containers` sets podman up on Debian)
containers: venv
	$(BIN)/pytest tests/containers

# .ci/lint and the tests at once (the linter's output comes after the tests'); fails if either does.
# The validators in venvs of their own (sam, checkov) start at once, beside the making of .venv
# (with its bytecode: VENV_COMPILE); ruff and statelint start with the tests. The linters run at
# the lowest CPU priority (nice 19): they take what the cores have left, the moments when every
# test worker waits on a run, instead of slowing the making of .venv and the tests down (about
# 14 s of CPU, most of it sam validate's cfn-lint and checkov).
test:
	@tools_log=$$(mktemp); lint_log=$$(mktemp); nice -n 19 bash .ci/lint tools >"$$tools_log" 2>&1 & tools=$$!; \
	if $(MAKE) --no-print-directory venv VENV_COMPILE=1; then \
	  nice -n 19 bash .ci/lint project >"$$lint_log" 2>&1 & lint=$$!; \
	  $(BIN)/pytest tests $(PYTEST_WORKERS) $(PYTEST_ARGS); tests=$$?; wait $$lint; linted=$$?; \
	else tests=1; linted=0; echo "make test: making .venv failed"; fi; \
	wait $$tools; tooled=$$?; echo "--- .ci/lint"; cat "$$lint_log" "$$tools_log"; rm -f "$$lint_log" "$$tools_log"; \
	[ $$linted -eq 0 ] && [ $$tooled -eq 0 ] || echo "make test: .ci/lint failed (exit $$linted, $$tooled)"; \
	[ $$tests -eq 0 ] && [ $$linted -eq 0 ] && [ $$tooled -eq 0 ]

# the many-runs test at 50 runs dropped at once (make test runs it at 10)
soak: venv
	MINIWDL_FARGATE_TEST_CONCURRENT_RUNS=50 $(BIN)/pytest tests/local/test_many_runs.py

# -- the driver image (needs Docker and AWS credentials; not used by demo or test) -------------
# The stack's DriverImage default is <account>.dkr.ecr.<region>.amazonaws.com/miniwdl-fargate-driver:latest
# in the stack's region, which is where push-image puts it: samconfig.toml's region unless
# AWS_REGION is set. Each push also gets an immutable-by-convention tag (the commit) to pin with
#   sam deploy --parameter-overrides DriverImage=<the URI printed at the end>
ECR_REPOSITORY ?= miniwdl-fargate-driver
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || date +%Y%m%d%H%M%S)
SAMCONFIG_REGION := $(or $(shell sed -n 's/^region *= *"\(.*\)"/\1/p' samconfig.toml | head -n 1),us-east-1)
AWS_REGION ?= $(SAMCONFIG_REGION)
# untagged images (replaced :latest) expire after a day, and at most 20 tagged ones are kept
ECR_LIFECYCLE := {"rules":[{"rulePriority":1,"description":"expire untagged","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}},{"rulePriority":2,"description":"keep 20 images","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":20},"action":{"type":"expire"}}]}

image:
	docker build --platform linux/amd64 -t $(ECR_REPOSITORY):$(IMAGE_TAG) .

push-image: image
	@set -eu; \
	account=$$(aws sts get-caller-identity --query Account --output text); \
	if [ "$(AWS_REGION)" != "$(SAMCONFIG_REGION)" ]; then \
	  echo "note: pushing to $(AWS_REGION) (AWS_REGION), where samconfig.toml says $(SAMCONFIG_REGION):" \
	    "answer $(AWS_REGION) at sam deploy --guided's region prompt, or the stack will not find its driver image"; \
	fi; \
	if ! aws iam get-role --role-name AWSServiceRoleForECS >/dev/null 2>&1; then \
	  echo "creating the ECS service-linked role (a new account's first cluster with capacity providers can fail without it)"; \
	  aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com >/dev/null; \
	fi; \
	registry=$$account.dkr.ecr.$(AWS_REGION).amazonaws.com; \
	if ! aws ecr describe-repositories --region $(AWS_REGION) --repository-names $(ECR_REPOSITORY) >/dev/null 2>&1; then \
	  echo "creating ECR repository $(ECR_REPOSITORY) in $(AWS_REGION)"; \
	  aws ecr create-repository --region $(AWS_REGION) --repository-name $(ECR_REPOSITORY) \
	    --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=AES256 >/dev/null; \
	  aws ecr put-lifecycle-policy --region $(AWS_REGION) --repository-name $(ECR_REPOSITORY) \
	    --lifecycle-policy-text '$(ECR_LIFECYCLE)' >/dev/null; \
	fi; \
	aws ecr get-login-password --region $(AWS_REGION) | docker login --username AWS --password-stdin $$registry; \
	for tag in $(IMAGE_TAG) latest; do \
	  docker tag $(ECR_REPOSITORY):$(IMAGE_TAG) $$registry/$(ECR_REPOSITORY):$$tag; \
	  docker push $$registry/$(ECR_REPOSITORY):$$tag; \
	done; \
	echo "pushed; pin it with: sam deploy --parameter-overrides DriverImage=$$registry/$(ECR_REPOSITORY):$(IMAGE_TAG)"

clean:
	rm -rf $(VENV) .venv-sam .venv-checkov .aws-sam .pytest_cache

bench: venv
	$(BIN)/python bench/fargate_scale.py

# 10,000 tasks in one run at the driver's own task_concurrency (about 10 min)
bench-10k: venv
	$(BIN)/python bench/fargate_scale.py --tasks 10000 --concurrency $$($(BIN)/python -c 'from miniwdl_fargate.driver import TASK_CONCURRENCY; print(TASK_CONCURRENCY)')

# 10 drivers of 500 tasks each at once against one simulated account (about 5 min)
bench-fair: venv
	$(BIN)/python bench/fargate_scale.py --runs 10 --tasks 500

bench-transfers: venv
	$(BIN)/python bench/transfers.py

bench-local: venv
	$(BIN)/python bench/local_overhead.py

bench-local-ecs: venv
	$(BIN)/python bench/local_ecs_lookup.py

bench-moto-server: venv
	$(BIN)/python bench/moto_server.py

# (a clone of HEAD makes its own .venv: this needs only Python 3.11, git and make)
bench-tests:
	$(PYTHON) bench/test_suite.py

openapi: venv
	cd functions && ../$(BIN)/python -c "import api; open('../docs/openapi.json', 'w').write(api.openapi_json())"

# docs/configuration.md is generated from plugin/miniwdl_fargate/aws_fargate.cfg (tests/unit/test_configuration_doc.py
# fails when it is out of date)
docs: venv
	$(BIN)/python -m miniwdl_fargate.config_doc > docs/configuration.md
