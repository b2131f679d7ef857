# Every target sets up what it needs in the local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: here that is a local CPU wheel; a bare "torch" would pull a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

demo: $(STAMP)
	$(BIN)/polyspeech data synth --langs eng,deu,cmn --per-lang 30 --out demo-corpus
	$(BIN)/polyspeech data validate demo-corpus/train.jsonl

clean:
	rm -rf $(VENV) demo-corpus
