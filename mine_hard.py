#!/usr/bin/env python3
"""Global hard-pair mining (pitch medians + speaker embeddings) and the correlation analysis.

    python mine_hard.py --sources prep/train_sources.csv --output prep/pairs.csv \
        --speakers_out prep/speakers.csv [--f0 dio|harvest] [--embedding resemblyzer|speechbrain:<source>]
    python mine_hard.py mixtures --csv prep/test.csv --output prep/test_features.csv --pairs prep/pairs.csv
    python mine_hard.py correlate --results results/test_results.csv --features prep/test_features.csv \
        --plot corr.png
"""

import argparse
import logging
import os
import sys

from hardsep_lib.errors import OptionError, exit_on_error
from hardsep_lib.mining.features import FeatureSettings
from hardsep_lib.mining.jobs import mine_mixtures, mine_pairs, run_correlation
from hardsep_lib.mining.pairs import CRITERIA, HardPairRule
from hardsep_lib.mining.pitch import F0_METHODS

SUBCOMMANDS = ("mixtures", "correlate")


def add_feature_options(parser):
    """Options shared by the pair and mixture jobs."""
    parser.add_argument("--output", required=True, help="CSV to write")
    parser.add_argument("--f0", default="dio", choices=F0_METHODS, help="pyworld F0 extractor (default dio+stonemask)")
    parser.add_argument("--embedding", default="resemblyzer", help="resemblyzer (default) or speechbrain:<folder or hub id>")
    parser.add_argument("--device", default="cpu", help="device of the embedding model, e.g. cuda:0")
    parser.add_argument("--workers", type=int, default=1, help="CPU processes for feature extraction")
    parser.add_argument("--cache_dir", help="feature cache (default: feature_cache/ next to --output)")


def pairs_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", required=True, help="train_sources.csv from prepare_data.py")
    add_feature_options(parser)
    parser.add_argument("--speakers_out", help="also write the per-speaker table here")
    parser.add_argument("--criterion", default="combined", choices=CRITERIA)
    parser.add_argument("--hard_fraction", type=float, default=0.1, help="P_M: each speaker's closest share of partners")
    parser.add_argument("--max_pitch_diff_hz", type=float, help="threshold rule instead of P_M: pitch_diff_hz < this")
    parser.add_argument("--max_cos_dist", type=float, help="threshold rule instead of P_M: cos_dist < this")
    parser.add_argument("--max_utts_per_speaker", type=int, help="at most K random utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs_output", default="auto", choices=("auto", "all", "hard"),
                        help="rows to write: every pair, only the hard ones (what the DM sampler reads), or auto "
                             "(all up to 3,000 speakers)")
    parser.add_argument("--num_shards", type=int, default=1, help="split feature extraction over a job array")
    parser.add_argument("--shard_index", type=int, default=0)
    return parser


def mixtures_parser():
    parser = argparse.ArgumentParser(prog="mine_hard.py mixtures", description="Pair features of fixed mixtures.")
    parser.add_argument("--csv", required=True, help="a mixture manifest (test.csv)")
    add_feature_options(parser)
    parser.add_argument("--pairs", help="mined pair CSV (with its .json sidecar) for hardness / is_hard")
    return parser


def correlate_parser():
    parser = argparse.ArgumentParser(prog="mine_hard.py correlate", description="Pearson r of SI-SNRi vs pair features.")
    parser.add_argument("--results", required=True, help="test_results.csv written by train.py")
    parser.add_argument("--features", required=True, help="output of `mine_hard.py mixtures`")
    parser.add_argument("--output", help="JSON to write (default: <features>_correlation.json)")
    parser.add_argument("--plot", help="PNG scatter plots")
    return parser


def feature_settings(args):
    return FeatureSettings(f0_method=args.f0, embedding=args.embedding, device=args.device)


def cache_dir(args):
    return args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.output)), "feature_cache")


def run(argv):
    """Dispatches to the job named by the first argument (pair mining when none)."""
    if argv and argv[0] == "mixtures":
        args = mixtures_parser().parse_args(argv[1:])
        mine_mixtures(args.csv, args.output, feature_settings(args), cache_dir(args), args.workers, args.pairs)
    elif argv and argv[0] == "correlate":
        args = correlate_parser().parse_args(argv[1:])
        output = args.output or os.path.splitext(args.features)[0] + "_correlation.json"
        run_correlation(args.results, args.features, output, args.plot)
    else:
        args = pairs_parser().parse_args(argv)
        if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
            raise OptionError(f"--shard_index must be in [0, --num_shards) with --num_shards >= 1, got "
                              f"{args.shard_index} of {args.num_shards}")
        rule = HardPairRule(args.criterion, args.hard_fraction, args.max_pitch_diff_hz, args.max_cos_dist)
        mine_pairs(args.sources, args.output, feature_settings(args), cache_dir(args), args.speakers_out,
                   args.workers, rule, args.max_utts_per_speaker, args.seed, args.num_shards, args.shard_index,
                   args.pairs_output)


def main(argv):
    """Runs the job named by ``argv``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(argv)


if __name__ == "__main__":
    exit_on_error("mine_hard.py", main, sys.argv[1:])
