# Two commands for a fresh machine: `make test` and `make report`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: test report notebooks data clean-venv

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

## Run the test suite (tests needing data read DATA_MIRROR; CI makes a missing mirror a failure).
test: $(STAMP)
	$(PY) -m pytest

## Render the book (HTML and typst PDF) into _book/ from the frozen artifacts in results/.
report: $(STAMP)
	$(PY) -m pip install --quiet quarto-cli
	QUARTO_PYTHON=$(abspath $(PY)) PATH=$(abspath $(VENV))/bin:$$PATH quarto render

## Export every chapter to an executed notebook, plus notebooks/submission.ipynb.
notebooks: $(STAMP)
	$(PY) -m lib notebooks

## Fetch and verify the datasets (add MIRROR=DIR to use a local copy).
data: $(STAMP)
	$(PY) -m lib data $(if $(MIRROR),--mirror $(MIRROR))

clean-venv:
	rm -rf $(VENV)
