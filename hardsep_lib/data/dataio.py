"""Datasets for train.py: fixed mixtures from the CSV manifests, or dynamic mixing."""

import logging
import os

import numpy as np
import pandas as pd
import speechbrain as sb
import torch

from hardsep_lib.data.audio import load_mono
from hardsep_lib.training.ddp import ShardSampler
from hardsep_lib.data.dynamic_mixing import DynamicMixingDataset
from hardsep_lib.errors import DataError

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


class FixedMixtureSegments(torch.utils.data.Dataset):
    """The fixed training mixtures of a train.csv, each cropped to ``segment_samples`` samples.

    The dataset shuffles itself: item i of epoch e is mixture perm_e[i] (perm_e a permutation
    seeded by (seed, e)), cropped at a position drawn from an RNG seeded by (seed, e, i). So
    an item is the same in its every use (a ranking pass and its training pass see the same
    signal), in a resumed run, and with 1 or N processes (read it with a sequential sampler).
    Mixtures shorter than the crop are left out (logged), so batches hold no padding.
    Returns dicts with ``id``, ``mix_sig``, ``s1_sig``, ``s2_sig``.

    Parameters
    ----------
    table : DataFrame with ID, duration (s), mix_wav, s1_wav, s2_wav (train.csv)
    segment_samples : int, crop length in samples
    sample_rate : int, the manifests' rate in Hz
    seed : int
    """

    def __init__(self, table, segment_samples, sample_rate, seed=0):
        frames = np.round(table["duration"].to_numpy() * sample_rate).astype(np.int64)
        long_enough = frames >= segment_samples
        if not long_enough.any():
            raise DataError(f"no training mixture is at least training_signal_len ({segment_samples} samples) long")
        if not long_enough.all():
            logger.info("%d of %d training mixtures are shorter than training_signal_len (%d samples) and left out",
                        int((~long_enough).sum()), len(frames), segment_samples)
        self.rows = table[long_enough].reset_index(drop=True)
        self.frames = frames[long_enough]
        self.segment_samples = segment_samples
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Selects the epoch whose order and crops ``__getitem__`` returns."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        index = int(self.order[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(self.frames[index] - self.segment_samples + 1))
        row = self.rows.iloc[index]
        item = {"id": str(row["ID"])}
        for name in ("mix", "s1", "s2"):
            item[f"{name}_sig"] = torch.from_numpy(load_mono(row[f"{name}_wav"], start, self.segment_samples)[0])
        return item


def dataio_prep(hparams):
    """(train, valid, test) datasets and their loader options from the YAML.

    Training uses DynamicMixingDataset when ``dynamic_mixing`` is on, else the mixtures of
    train.csv (FixedMixtureSegments); both give items of exactly ``training_signal_len``
    samples. The validation and test sets are split across DDP ranks without repetition
    (ShardSampler).
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
    else:
        if hparams["hard_pairs_csv"]:
            logger.warning("hard_pairs_csv is used by dynamic mixing only; dynamic_mixing is off")
        table = pd.read_csv(manifests["train"], dtype={"ID": str})
        train = FixedMixtureSegments(table, hparams["training_signal_len"], hparams["sample_rate"], hparams["seed"])
    # Both training datasets draw their own random order per epoch: read them in order, so that
    # one process and N processes (DistributedSampler(shuffle=False) over this sampler) see the
    # same mixtures in every optimiser step.
    train_opts = dict(hparams["dataloader_opts"], sampler=torch.utils.data.SequentialSampler(train),
                      collate_fn=sb.dataio.batch.PaddedBatch)
    valid, test = fixed_mixture_dataset(manifests["valid"]), fixed_mixture_dataset(manifests["test"])
    # Batches of 1: the SI-SNR loss has no padding mask, so every mixture is scored unpadded.
    valid_opts = dict(hparams["eval_dataloader_opts"], sampler=ShardSampler(len(valid)))
    test_opts = dict(hparams["eval_dataloader_opts"], sampler=ShardSampler(len(test)))
    return (train, train_opts), (valid, valid_opts), (test, test_opts)
