#!/usr/bin/env python3
"""Separate recordings with a trained model, or export it as a SpeechBrain pretrained folder.

    python separate.py --model DIR INPUT... --output_folder OUT [--selection plain|weighted]
        [--device cuda:0] [--chunk_seconds 8 --overlap 0.25]
    python separate.py export --model DIR --to PRETRAINED_DIR [--selection plain|weighted]

DIR is a train.py output folder or an exported folder; INPUT is audio files, folders, or CSVs
with a mix_wav column. Writes <name>_s1.wav, <name>_s2.wav at each input's sample rate.
"""

import argparse
import logging
import sys

from hardsep_lib.errors import exit_on_error
from hardsep_lib.inference.export import export_model, load_separator
from hardsep_lib.inference.separate import ChunkedSeparator, separate_files


def parse_args(argv):
    if argv and argv[0] == "export":
        parser = argparse.ArgumentParser(prog="separate.py export", description="Write a SpeechBrain pretrained folder.")
        parser.add_argument("--model", required=True, help="a train.py output folder")
        parser.add_argument("--to", required=True, help="the folder to write")
        parser.add_argument("--selection", default="weighted", choices=("plain", "weighted"),
                            help="which best checkpoint (validation key) to export")
        return "export", parser.parse_args(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a train.py output folder or an exported folder")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders, or CSVs with mix_wav")
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--selection", default="weighted", choices=("plain", "weighted"),
                        help="best checkpoint by this validation key (train.py folders)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk_seconds", type=float, default=8.0, help="chunk length (0: whole file in one pass)")
    parser.add_argument("--overlap", type=float, default=0.25, help="share of a chunk overlapping the next")
    return "separate", parser.parse_args(argv)


def main(argv):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command, args = parse_args(argv)
    if command == "export":
        print(f"Exported to {export_model(args.model, args.to, args.selection)}")
        return
    model = load_separator(args.model, args.selection, args.device)
    separator = ChunkedSeparator(model.separate_batch, model.hparams.sample_rate, args.chunk_seconds, args.overlap)
    report = separate_files(separator, args.inputs, args.output_folder, model.hparams.num_spks)
    print(f"Separated files are in {args.output_folder}" + (f" ({len(report.skipped)} input(s) skipped)"
                                                            if report.skipped else ""))


if __name__ == "__main__":
    exit_on_error("separate.py", main, sys.argv[1:])
