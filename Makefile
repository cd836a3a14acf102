# make demo: set up, then run the whole pipeline on the synthetic espeak-ng corpus.
# make test: set up, then run the test suite (what CI runs).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO ?= demo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	command -v espeak-ng >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip wheel "setuptools<81"
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

test: setup
	$(PYTHON) -m pytest -q

demo: setup
	$(PYTHON) prepare_data.py --corpus synth --data_folder $(DEMO)/corpus --save_folder $(DEMO)/prep --n_mixtures 600 100 150
	@echo "demo: corpus prepared in $(DEMO)/prep (mining and training run here once they land)"

clean:
	rm -rf $(DEMO)
