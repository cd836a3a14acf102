#!/usr/bin/env python3
"""The paper's ablation table in one resumable command, with seeds and paired statistics.

    python ablation.py run hparams/ablation_cpu.yaml --output_folder results/ablation [--jobs 2]
    python ablation.py table results/ablation [--reference dm] [--hsr 5 10]

`run` prepares the corpus, mines the pair CSVs (once per criterion, one feature cache), and
trains each (training, seed) once: rows that share a training (dm / dm_wvl, dm_wtl /
dm_wtl_wvl) test its two best checkpoints. Killed and run again, it skips finished rows and
resumes an unfinished training from its checkpoint. `table` writes ablation.csv/.md/.png.
"""

import argparse
import logging
import sys

from hardsep_lib.errors import exit_on_error
from hardsep_lib.evaluation.ablation_runner import ROWS, AblationRunner, load_config
from hardsep_lib.evaluation.ablation_table import write_table


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and test every row and seed of a config (resumable)")
    run.add_argument("config", help="ablation config YAML (e.g. hparams/ablation_cpu.yaml)")
    run.add_argument("--output_folder", required=True)
    run.add_argument("--jobs", type=int, default=1, help="trainings at a time (each gets cores / jobs threads)")
    table = commands.add_parser("table", help="write ablation.csv, ablation.md and ablation.png")
    table.add_argument("folder")
    table.add_argument("--config", help="take reference, rows and HSR thresholds from this config")
    table.add_argument("--reference", help="the row deltas are taken against (default: the config's, else dm)")
    table.add_argument("--hsr", type=float, nargs="+", help="HSR thresholds in dB (default: the config's, else 5 10)")
    return parser.parse_args(argv)


def main(argv):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.command == "run":
        if args.jobs < 1:
            from hardsep_lib.errors import OptionError

            raise OptionError(f"--jobs must be >= 1, got {args.jobs}")
        config = load_config(args.config)
        AblationRunner(config, args.output_folder, args.jobs).run()
        write_table(args.output_folder, config.rows, config.reference, tuple(config.hsr))
    else:
        config = load_config(args.config) if args.config else None
        reference = args.reference or (config.reference if config else "dm")
        thresholds = tuple(args.hsr or (config.hsr if config else (5.0, 10.0)))
        table = write_table(args.folder, config.rows if config else list(ROWS), reference, thresholds)
        print(table.to_string(index=False, float_format=lambda value: f"{value:.2f}"))


if __name__ == "__main__":
    exit_on_error("ablation.py", main, sys.argv[1:])
