# Set-up is two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first (a local CPU wheel); an unpinned torch would pull CUDA packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv fonts demo test test-all lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The Noto few-shot data set renders installed fonts (nothing is downloaded at run time). Installed
# here on Debian/Ubuntu when running as root; elsewhere its tests are skipped with a note.
fonts:
	@if ls /usr/share/fonts/truetype/noto/NotoSansArmenian-Regular.ttf >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-core >/dev/null) \
		|| echo "note: could not install fonts-noto-core; the Noto few-shot tests will be skipped"; \
	else echo "note: Noto fonts missing (Debian/Ubuntu: sudo apt-get install fonts-noto-core);" \
		"the Noto few-shot tests will be skipped"; fi

demo: $(STAMP)
	$(VENV)/bin/nam demo

test: $(STAMP) fonts
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-all: $(STAMP) fonts
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m ''

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: $(STAMP)
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

bench: $(STAMP)
	$(VENV)/bin/nam bench attention

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
