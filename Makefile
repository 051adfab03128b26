# Two commands for a fresh machine: `make test` and `make report`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# A usable quarto (>= 1.5) on PATH, else the offline build beside this project, else
# `pip install quarto-cli`, else a short message (lib/book/quarto.py, standard library only).
QUARTO = quarto="$$($(PY) -m lib.book.quarto)" && QUARTO_PYTHON=$(abspath $(PY)) "$$quarto"
BOOK = $(PYTHON) -m lib.book.quarto

.PHONY: test report preview freeze screenshots notebooks data reproduce clean-venv

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

## Run the test suite (tests needing data read DATA_MIRROR; CI makes a missing mirror a failure).
test: $(STAMP)
	$(PY) -m pytest

## Render the book (HTML and typst PDF) into _book/; chapters whose _freeze/ is current are not re-run.
## Quarto is found first; .venv is built only when a chapter must re-execute.
report:
	@$(BOOK) find --venv $(VENV) > /dev/null
	@$(BOOK) stale || $(MAKE) --no-print-directory $(STAMP)
	@$(BOOK) render --venv $(VENV)

## Serve the book and re-render chapters as you edit them, with the venv's Python.
preview: $(STAMP)
	@$(QUARTO) preview

## Re-execute every chapter against results/ and rewrite _freeze/ (commit it with the chapters).
freeze: $(STAMP)
	rm -rf _freeze
	@$(QUARTO) render

## Screenshots of every HTML page and every PDF page of _book/ into _book/screenshots/.
screenshots: $(STAMP)
	$(PY) -m lib.book.screenshots _book

## Export every chapter to an executed notebook, plus notebooks/submission.ipynb.
notebooks: $(STAMP)
	$(PY) -m lib notebooks

## Fetch and verify the datasets (add MIRROR=DIR to use a local copy).
data: $(STAMP)
	$(PY) -m lib data $(if $(MIRROR),--mirror $(MIRROR))

## Re-derive every artifact the book reads from the datasets and compare with results/ (MIRROR=DIR or DATA_MIRROR).
reproduce: $(STAMP)
	$(PY) -m lib reproduce $(if $(MIRROR),--mirror $(MIRROR))

clean-venv:
	rm -rf $(VENV)
