# The project's commands. `make synth` and `make test` do all the set-up they need.
SHELL := /bin/bash
ENV ?= dev
VENV := .venv
PYTHON ?= python3
# The pinned CDK CLI and a supported Node (node_modules/.bin/node, Node 22) come first,
# so `cdk` and the jsii runtime behind aws-cdk-lib both run on it.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)

# $(call cdk_synth,ARGS[,DIR]): `cdk synth --quiet ARGS` (in DIR), run by
# pipeline_tools/cdk_synth.py while make expands the recipe. GNU make follows any failed recipe
# line with its own "make: *** [...] Error 1", so a failed synth ends make through $(error)
# instead, with the one line the tool hands back: the app's settings error alone, or the
# command that failed after its output. (So `make -n synth` synthesizes too. GNU make 4.3's
# $(shell) gets make's own environment, not what the Makefile exports: hence PATH=.)
cdk_synth = $(eval synth_failure := $(shell PATH='$(PATH)' python -m pipeline_tools.cdk_synth \
  $(if $(2),-C $(2)) $(1)))$(if $(synth_failure),$(error $(synth_failure))):

# $(call checked,COMMAND): COMMAND run while make reads this file; when it fails, make stops at
# once with its output (a one-line error) through $(error), and nothing after it.
checked = $(eval checked_output := $(shell PATH='$(PATH)' $(1) 2>&1))$(if \
  $(filter-out 0,$(.SHELLSTATUS)),$(error $(checked_output)))

# make cost's inputs (WORKLOAD, RECORDS) are checked before its synths, once the tools are
# installed (on a fresh clone the report itself refuses them, after the install).
ifneq ($(filter cost,$(MAKECMDGOALS)),)
ifneq ($(wildcard $(VENV)/.installed),)
$(call checked,python -m pipeline_tools.cost --check $(if $(WORKLOAD),--workload $(WORKLOAD)) \
  $(if $(RECORDS),--records-per-month $(RECORDS)))
endif
endif

# make rightsize's LOGS are checked the same way: each a file, or - (standard input).
ifneq ($(filter rightsize,$(MAKECMDGOALS)),)
$(foreach log,$(LOGS),$(if $(or $(filter -,$(log)),$(wildcard $(log))),,$(error \
  rightsize: cannot read $(log): no such file (LOGS="file ..." names REPORT log files))))
endif

.PHONY: help install synth synth-toolchain synth-all synth-example api-docs test lint typecheck checkov cost cost-chart rightsize deploy-local destroy-local bench clean

## install: the pinned packages in .venv, the CDK CLI and Node 22 in node_modules
install: $(VENV)/.installed node_modules/.installed

## help: the targets, one line each
help:
	@awk '/^## [a-z-]+: / { sub(/^## /, ""); name = $$0; sub(/: .*/, "", name); \
	  text = substr($$0, length(name) + 3); printf "make %-15s %s\n", name, text }' $(firstword $(MAKEFILE_LIST))

$(VENV)/.installed: requirements.txt requirements-dev.txt lambda_src/requirements.txt pyproject.toml lib/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --editable lib --editable .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## synth: CloudFormation for ENV (default dev) in cdk.out, and a short summary of it
synth: install
	@$(call cdk_synth,-c environment=$(ENV))
	python -m pipeline_tools.summary cdk.out/DataPipeline-$(ENV).template.json

## synth-toolchain: the toolchain (DataPipeline-Toolchain) and its stage assemblies in cdk.out
## (dev, staging and prod; cdk-nag runs on each)
synth-toolchain: install
	@$(call cdk_synth,-c synth=toolchain)  # its echo is on stderr: make cost's stdout is the bill

## synth-all: the dev, staging and prod templates in cdk.out, and prod on the per-record path
## in cdk.out/per-record (cdk-nag runs on each; checkov reads them all)
synth-all: install
	@$(foreach env,dev staging prod,$(call cdk_synth,-c environment=$(env)))
	@$(call cdk_synth,-c environment=prod -c ingestion=per_record -o cdk.out/per-record)

## synth-example: the example app of docs/constructs.md, synthesized in examples/orders/cdk.out
synth-example: install
	@$(call cdk_synth,,examples/orders)

## api-docs: the constructs' API reference from their docstrings (pdoc), in docs/api/
## (PDOC_ALLOW_EXEC: importing aws-cdk-lib starts jsii's Node process)
api-docs: install
	PDOC_ALLOW_EXEC=1 pdoc --docformat restructuredtext -o docs/api constructs_lib

## cost: the monthly bill of dev, staging and prod against the naive stack, prod's designs
## (per record, batched: docs/batching.md), and the toolchain's
## (measured from the code, with the 1 M / 10 M / 100 M sweep; WORKLOAD=file.json, RECORDS=N;
## MARKDOWN=1 prints clean Markdown on stdout, progress goes to stderr)
cost: synth-all synth-toolchain
	@python -m pipeline_tools.cost --sweep $(if $(WORKLOAD),--workload $(WORKLOAD)) \
	  $(if $(RECORDS),--records-per-month $(RECORDS))
	@echo
	@python -m pipeline_tools.bill.batching
	@echo
	@python -m pipeline_tools.toolchain_cost $(if $(MARKDOWN),--markdown)

## cost-chart: the README's chart of prod's bill against volume, beside the per-record design's
## and the naive stack's (docs/cost-prod.png)
cost-chart: synth-all
	@python -m pipeline_tools.cost --chart docs/cost-prod.png \
	  --against cdk.out/per-record/DataPipeline-prod.template.json \
	  cdk.out/DataPipeline-prod.template.json

## rightsize: memory recommendations from REPORT log lines (LOGS="file ..."; default: samples)
rightsize: install
	python -m pipeline_tools.rightsize $(or $(LOGS),tests/data/*-report.log)

## deploy-local: the real `cdk deploy` into a local emulator, then records through the code
## (results printed; the emulator stops after, KEEP=1 leaves it running; INGESTION=batched
## deploys the batched path)
deploy-local: install
	python -m pipeline_tools.local up $(if $(KEEP),--keep) $(if $(INGESTION),--ingestion $(INGESTION))

## destroy-local: destroy the stack in a kept emulator and stop it
destroy-local: install
	python -m pipeline_tools.local down

## bench: the benchmarks against their floors (pyperf), into BENCHMARKS.md
bench: install
	python -m pipeline_tools.bench.run

## test: lint, type-check, the whole test suite, and checkov on every template
test: install lint typecheck
	python -m pytest -n 2 --dist loadfile
	$(MAKE) checkov

.venv-checkov/.installed: requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

## checkov: checkov on every synthesized template; fails on any failed check
## (dev, staging and prod, the toolchain and its stage assemblies)
checkov: synth-all synth-toolchain .venv-checkov/.installed
	.venv-checkov/bin/checkov --directory cdk.out --framework cloudformation --compact \
	  --quiet --skip-download

## lint: ruff's lint and format checks
lint:
	ruff check .
	ruff format --check .

## typecheck: mypy on the app, the constructs, the tools and the runtime code
typecheck:
	mypy app.py lib/src/constructs_lib serverless_stack pipeline_tools lambda_src

## clean: remove synth output, caches and the checkov venv
clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .venv-checkov
