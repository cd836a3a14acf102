# make demo: set up, then run the whole pipeline on the synthetic espeak-ng corpus.
# make test: set up, then run the test suite (what CI runs).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO ?= demo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test demo bench clean ablation

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
	$(PYTHON) prepare_data.py --corpus synth --data_folder $(DEMO)/corpus --save_folder $(DEMO)/prep \
		--n_mixtures 600 100 150
	$(PYTHON) mine_hard.py --sources $(DEMO)/prep/train_sources.csv --output $(DEMO)/prep/pairs.csv \
		--speakers_out $(DEMO)/prep/speakers.csv --workers 2
	$(PYTHON) mine_hard.py mixtures --csv $(DEMO)/prep/test.csv --output $(DEMO)/prep/test_features.csv \
		--pairs $(DEMO)/prep/pairs.csv
	$(PYTHON) train.py hparams/sepformer_tiny.yaml --data_folder $(DEMO)/corpus --save_folder $(DEMO)/prep \
		--skip_prep True --output_folder $(DEMO)/sepformer_tiny --hard_pairs_csv $(DEMO)/prep/pairs.csv \
		--test_features_csv $(DEMO)/prep/test_features.csv
	$(PYTHON) mine_hard.py correlate --results $(DEMO)/sepformer_tiny/test_results.csv \
		--features $(DEMO)/prep/test_features.csv --plot $(DEMO)/correlation.png
	$(PYTHON) -c "import pandas as pd; print(pd.read_json('$(DEMO)/sepformer_tiny/test_summary.json').to_string(index=False))"
	$(PYTHON) separate.py --model $(DEMO)/sepformer_tiny --output_folder $(DEMO)/separated \
		$$(sed -n 2p $(DEMO)/prep/test.csv | cut -d, -f3)

bench: setup
	$(PYTHON) bench/mining.py
	$(PYTHON) bench/training.py

clean:
	rm -rf $(DEMO)

# make ablation: the paper's ablation table at CPU scale (hours; resumable: run it again after a stop)
ablation: setup
	$(PYTHON) ablation.py run hparams/ablation_cpu.yaml --output_folder results/ablation_cpu --jobs 2
