# Two set-up commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: corpus-deps eval-deps demo test lint typecheck unit integration bench system-deps clean constraints

# Debian tools the tests use to make their own fixtures (speech, conversions).
system-deps:
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null || { \
	  echo "installing espeak-ng and sox (test fixtures)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox >/dev/null; }

# Debian text + voices for `python -m clasp_ingest.training.corpus` (clasp-mini training corpus);
# wordnet-base: English glosses for `python -m clasp_ingest.training.wordnet_text`.
corpus-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox \
	  fortunes fortunes-min fortunes-de fortunes-es fortunes-it fortunes-br fortunes-ru wordnet-base >/dev/null

# Real-speech evaluation data: Debian pocketsphinx-testdata (LibriVox + cards utterances), festvox-ru
# (620 Russian sentences, one reader), fillets-ng-data-cs/-nl (acted Czech/Dutch lines with their English
# originals) and PyPI pytest-audioeval (27 clips, 9 languages); then python -m clasp_ingest.evaluation.datasets.
# apertium-eng-spa: `bench/eval_mini.py apertium` (Spanish queries for the held-out English clips).
eval-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocketsphinx-testdata \
	  festvox-ru fillets-ng-data-cs fillets-ng-data-nl apertium-eng-spa >/dev/null
	$(BIN)/pip install -q pytest-audioeval==0.1.3

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@avail=$$(df -Pk . | awk 'NR==2 {print int($$4/1048576)}'); [ "$$avail" -ge 9 ] || \
	  echo "warning: $$avail GiB free here; the venv needs about 8 GiB (torch with its CUDA libraries)" >&2
	$(BIN)/pip install -q --no-cache-dir -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m clasp_ingest.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Test files run in parallel, one worker per CPU core up to 4 (pytest-xdist; a file's tests stay
# in one worker, in order): `make test PYTEST_WORKERS=0` runs them in this one process. The fault
# suite (whole processes' memory, kills, deadlines) runs after them, alone, in a process of its own.
PYTEST_WORKERS ?= auto
test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --ignore tests/faults
	$(BIN)/pytest tests/faults

# every bench script that runs without arguments (bench_rerank_real.py and bench_transcribe_many.py
# need evaluation sets: see their --help)
bench: $(STAMP)
	@for f in bench/bench_*.py; do \
		case $$f in *bench_rerank_real.py|*bench_transcribe_many.py) echo "== $$f: needs sets, see --help"; continue;; esac; \
		echo "== $$f"; $(BIN)/python $$f; done

# The tested set, from the current venv (after changing a dependency: make constraints).
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vi '^clasp-ingest'; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
