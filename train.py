#!/usr/bin/env python3
"""Recipe for training a speech separation model (SepFormer or Conv-TasNet) with the hard-sample
mining of "Mining Hard Samples Locally and Globally for Improved Speech Separation":
dynamic mixing with hard-pair re-sampling (DM), weighted training loss (WTL) and weighted
validation loss (WVL), each a YAML switch.

To run this recipe:
> python train.py hparams/sepformer_hard.yaml --data_folder /data/wsj0-mix/2speakers/wav8k/min \
      --dm_folder /data/wsj0/si_tr_s --output_folder results/sepformer_hard
> python train.py hparams/sepformer_tiny.yaml --corpus synth --data_folder data/synth   # CPU demo
> torchrun --nproc_per_node=2 train.py hparams/sepformer_hard.yaml ...                   # DDP
> python train.py ... --test_only --test_selection plain    # test the best checkpoint by plain SI-SNR
"""

import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from hardsep_lib.data.dataio import dataio_prep
from hardsep_lib.data.prepare import prepare_data
from hardsep_lib.errors import OptionError, exit_on_error
from hardsep_lib.training.brain import SELECTION_KEYS, Separation
from hardsep_lib.training.checkpoints import set_aside_corrupt_checkpoints
from hardsep_lib.training.options import check_training_options, test_selection


def main(argv):
    """Prepares the data (once, on the main process), trains, then tests the best checkpoint."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_training_options(hparams, run_opts)

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )

    if not hparams["skip_prep"]:
        run_on_main(
            prepare_data,
            kwargs={
                "corpus": hparams["corpus"],
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["save_folder"],
                "dm_folder": hparams["dm_folder"],
                "sample_rate": hparams["sample_rate"],
                "seed": hparams["seed"],
                "n_mixtures": hparams["prep_mixtures"],
            },
        )

    (train_data, train_opts), (valid_data, valid_opts), (test_data, test_opts) = dataio_prep(hparams)

    separator = Separation(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    separator.train_dataset = train_data
    separator.test_selection = test_selection(hparams)
    selection_key = SELECTION_KEYS[separator.test_selection]

    if not separator.test_only:  # --test_only on the command line, or test_only in the YAML
        separator.fit(
            separator.hparams.epoch_counter,
            train_data,
            valid_data,
            train_loader_kwargs=train_opts,
            valid_loader_kwargs=valid_opts,
        )
    else:
        if sb.utils.distributed.if_main_process():
            set_aside_corrupt_checkpoints(hparams["checkpoint_folder"])
        sb.utils.distributed.ddp_barrier()
        if hparams["checkpointer"].find_checkpoint(min_key=selection_key) is None:
            raise OptionError(f"--test_only: no checkpoint with a {selection_key} in {hparams['checkpoint_folder']} "
                              "(train first, or point --output_folder at a trained run)")

    separator.evaluate(test_data, min_key=selection_key, test_loader_kwargs=test_opts)

    # Leave DDP cleanly: a gloo group still alive at interpreter exit can abort a rank
    # ("terminate called without an active exception").
    if sb.utils.distributed.is_distributed_initialized():
        sb.utils.distributed.ddp_barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    exit_on_error("train.py", main, sys.argv[1:])
