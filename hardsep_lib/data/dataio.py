"""Datasets for train.py: fixed mixtures from the CSV manifests, or dynamic mixing."""

import logging
import os

import pandas as pd
import speechbrain as sb
import torch

from hardsep_lib.data.audio import load_mono
from hardsep_lib.training.ddp import ShardSampler
from hardsep_lib.data.dynamic_mixing import DynamicMixingDataset

logger = logging.getLogger(__name__)


def read_signal(path):
    """(samples,) float32 tensor of a mono file. soundfile, not torchaudio.load, which needs
    torchcodec from torchaudio 2.9 on."""
    return torch.from_numpy(load_mono(path)[0])


def fixed_mixture_dataset(csv_path):
    """DynamicItemDataset of a train/valid/test.csv, giving id, mix_sig, s1_sig, s2_sig, s1_spk, s2_spk."""
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=csv_path)
    for name in ("mix", "s1", "s2"):
        pipeline = sb.utils.data_pipeline.takes(f"{name}_wav")(
            sb.utils.data_pipeline.provides(f"{name}_sig")(read_signal)
        )
        dataset.add_dynamic_item(pipeline)
    dataset.set_output_keys(["id", "mix_sig", "s1_sig", "s2_sig", "s1_spk", "s2_spk"])
    return dataset


def dataio_prep(hparams):
    """(train, valid, test) datasets and their loader options from the YAML.

    Training uses DynamicMixingDataset when ``dynamic_mixing`` is on, else train.csv. The
    validation and test sets are split across DDP ranks without repetition (ShardSampler).
    """
    manifests = {split: os.path.join(hparams["save_folder"], f"{split}.csv") for split in ("train", "valid", "test")}
    if hparams["dynamic_mixing"]:
        sources = pd.read_csv(os.path.join(hparams["save_folder"], "train_sources.csv"), dtype={"spk_id": str})
        train = DynamicMixingDataset(
            sources,
            epoch_size=hparams["dm_epoch_size"],
            segment_samples=hparams["training_signal_len"],
            seed=hparams["seed"],
            hard_pairs_csv=hparams["hard_pairs_csv"],
            hard_ratio=hparams["hard_ratio"],
        )
        train_opts = dict(hparams["dataloader_opts"], collate_fn=sb.dataio.batch.PaddedBatch)
    else:
        if hparams["hard_pairs_csv"]:
            logger.warning("hard_pairs_csv is used by dynamic mixing only; dynamic_mixing is off")
        train = fixed_mixture_dataset(manifests["train"])
        train_opts = dict(hparams["dataloader_opts"], shuffle=True)
    valid, test = fixed_mixture_dataset(manifests["valid"]), fixed_mixture_dataset(manifests["test"])
    # Batches of 1: the SI-SNR loss has no padding mask, so every mixture is scored unpadded.
    valid_opts = dict(hparams["eval_dataloader_opts"], sampler=ShardSampler(len(valid)))
    test_opts = dict(hparams["eval_dataloader_opts"], sampler=ShardSampler(len(test)))
    return (train, train_opts), (valid, valid_opts), (test, test_opts)
