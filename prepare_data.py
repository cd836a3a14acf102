#!/usr/bin/env python3
"""Prepares SpeechBrain CSV manifests for WSJ0-2mix, Libri2Mix, a speaker folder tree, or the
synthetic espeak-ng corpus.

Example:
    python prepare_data.py --corpus wsj0-2mix --data_folder /data/wsj0-mix/2speakers/wav8k/min \
        --dm_folder /data/wsj0/si_tr_s --save_folder results/prep
    python prepare_data.py --corpus synth --data_folder data/synth --save_folder data/synth_prep
"""

import argparse
import logging
import sys

from hardsep_lib.data.prepare import CORPORA, prepare_data
from hardsep_lib.errors import exit_on_error


def parse_args(argv):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, choices=CORPORA)
    parser.add_argument("--data_folder", required=True, help="corpus root in its public layout (synth: output folder)")
    parser.add_argument("--save_folder", required=True, help="where the CSV manifests are written")
    parser.add_argument("--dm_folder", help="single-speaker tree for dynamic mixing (WSJ0 si_tr_s, LibriSpeech train-clean-*)")
    parser.add_argument("--sample_rate", type=int, default=8000, help="target rate in Hz (default 8000)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--n_mixtures", type=int, nargs=3, default=(1000, 200, 300), metavar=("TRAIN", "VALID", "TEST"),
                        help="generated mixtures per split (folder and synth corpora)")
    parser.add_argument("--held_out_fraction", type=float, default=0.15,
                        help="share of speakers held out for each of valid and test (folder and synth)")
    parser.add_argument("--n_speakers", type=int, default=48,
                        help="speakers of the generated synth corpus (a multiple of 6, up to 132)")
    return parser.parse_args(argv)


def main(argv=None):
    """Runs prepare_data."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prepare_data(**vars(args))


if __name__ == "__main__":
    exit_on_error("prepare_data.py", main, sys.argv[1:])
