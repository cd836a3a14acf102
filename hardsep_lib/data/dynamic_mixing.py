"""Dynamic mixing (DM) with hard-pair re-sampling, as a map-style dataset.

Compared with SpeechBrain's WSJ0Mix ``dynamic_mixing.py``:
- it is a regular Dataset of ``epoch_size`` items, so Brain's DistributedSampler splits each
  epoch across DDP ranks (there every rank runs the whole epoch: speechbrain issues 1314, 1517);
- file lengths come from train_sources.csv, read once, and only the crop is decoded;
- item i of epoch e is drawn from an RNG seeded by (seed, e, i): runs are reproducible, ranks
  and workers draw different mixtures, and a resumed run continues the same stream.
"""

import logging

import numpy as np
import pandas as pd
import torch

from hardsep_lib.data.audio import load_mono
from hardsep_lib.data.mixing import draw_levels_db, mix_pair

logger = logging.getLogger(__name__)


class HardPairError(Exception):
    """A pair CSV that cannot drive hard re-sampling."""


class PairSampler:
    """Draws speaker pairs: plain DM, or with probability ``hard_ratio`` (P_S) a hard pair.

    Plain draws follow SpeechBrain: two distinct speakers with probability proportional to
    their utterance counts. A hard draw keeps the first speaker as anchor and takes its partner
    uniformly from the anchor's ``is_hard`` partners; an anchor without hard partners is
    replaced by one drawn (again by utterance count) among the speakers that have some.
    Every draw is O(1) after the tables are built.
    """

    def __init__(self, utterance_speakers, hard_partners=None, hard_ratio=0.0):
        """utterance_speakers: speaker index of each utterance (n_utts,);
        hard_partners: {speaker index: array of partner speaker indices}."""
        self.utterance_speakers = np.asarray(utterance_speakers)
        self.hard_partners = hard_partners or {}
        self.hard_ratio = hard_ratio if self.hard_partners else 0.0
        has_partner = np.array([spk in self.hard_partners for spk in self.utterance_speakers])
        self.anchor_utterances = np.flatnonzero(has_partner)

    def draw(self, rng):
        """(speaker 1, speaker 2, is_hard_draw) from a numpy Generator."""
        first = self.utterance_speakers[rng.integers(len(self.utterance_speakers))]
        if self.hard_ratio > 0 and rng.random() < self.hard_ratio:
            if first not in self.hard_partners:
                first = self.utterance_speakers[self.anchor_utterances[rng.integers(len(self.anchor_utterances))]]
            partners = self.hard_partners[first]
            return first, partners[rng.integers(len(partners))], True
        second = first
        while second == first:
            second = self.utterance_speakers[rng.integers(len(self.utterance_speakers))]
        return first, second, False


def load_hard_partners(pairs_csv, speakers):
    """{speaker index: partner indices} of the ``is_hard`` rows of a mined pair CSV.

    ``speakers`` lists the training speakers (their index is their position). Pairs naming a
    speaker outside that list are reported and ignored; a CSV with no usable hard row is an
    error.
    """
    try:
        pairs = pd.read_csv(pairs_csv, dtype={"spk1": str, "spk2": str})
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise HardPairError(f"cannot read the pair CSV {pairs_csv}: {error}") from error
    if not {"spk1", "spk2", "is_hard"} <= set(pairs.columns):
        raise HardPairError(f"{pairs_csv} lacks the spk1, spk2 and is_hard columns of mine_hard.py")
    index = {spk: position for position, spk in enumerate(speakers)}
    known = pairs["spk1"].isin(index) & pairs["spk2"].isin(index)
    if not known.all():
        unknown = sorted(set(pairs.loc[~known, ["spk1", "spk2"]].to_numpy().ravel()) - set(index))
        logger.warning("%s: %d pair(s) name %d speaker(s) absent from the training sources (e.g. %s); ignored",
                       pairs_csv, int((~known).sum()), len(unknown), ", ".join(unknown[:5]))
    hard = pairs[known & pairs["is_hard"].astype(bool)]
    if hard.empty:
        raise HardPairError(f"{pairs_csv} has no hard pair among the training speakers, but hard_ratio > 0")
    first = hard["spk1"].map(index).to_numpy()
    second = hard["spk2"].map(index).to_numpy()
    both_ways = pd.DataFrame({"anchor": np.concatenate([first, second]), "partner": np.concatenate([second, first])})
    return {int(anchor): group["partner"].to_numpy() for anchor, group in both_ways.groupby("anchor")}


class DynamicMixingDataset(torch.utils.data.Dataset):
    """On-the-fly two-speaker mixtures from train_sources.csv.

    Item i of the current epoch: a speaker pair from PairSampler, one random utterance of
    each, a random crop of both to min(their lengths, ``segment_samples``), levels from
    mixing.draw_levels_db, mixed by mixing.mix_pair. Returns a dict with ``id``,
    ``mix_sig``/``s1_sig``/``s2_sig`` (float32 tensors (samples,)) and ``hard_draw`` (bool).
    Call ``set_epoch`` before each epoch.
    """

    def __init__(self, sources, epoch_size, segment_samples, seed=0, hard_pairs_csv=None, hard_ratio=0.0):
        if sources.empty or sources["spk_id"].nunique() < 2:
            raise HardPairError("dynamic mixing needs utterances of at least 2 speakers in train_sources.csv")
        self.paths = sources["wav"].to_list()
        self.frames = np.round(sources["duration"].to_numpy() * sources["sample_rate"].to_numpy()).astype(np.int64)
        self.speakers = sorted(sources["spk_id"].astype(str).unique())
        speaker_of = sources["spk_id"].astype(str).map({spk: i for i, spk in enumerate(self.speakers)}).to_numpy()
        self.utterances_of = [np.flatnonzero(speaker_of == spk) for spk in range(len(self.speakers))]
        hard_partners = None
        if hard_ratio > 0 and hard_pairs_csv:
            hard_partners = load_hard_partners(hard_pairs_csv, self.speakers)
        elif hard_ratio > 0:
            logger.warning("hard_ratio = %s but no hard_pairs_csv: plain dynamic mixing", hard_ratio)
        self.pair_sampler = PairSampler(speaker_of, hard_partners, hard_ratio)
        self.epoch_size = epoch_size
        self.segment_samples = segment_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        """Selects the epoch whose stream of mixtures ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self):
        return self.epoch_size

    def draw(self, index):
        """The recipe of item ``index``: (utterance 1, utterance 2, crop starts, length, levels in dB, hard)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        spk1, spk2, hard = self.pair_sampler.draw(rng)
        utt1 = self.utterances_of[spk1][rng.integers(len(self.utterances_of[spk1]))]
        utt2 = self.utterances_of[spk2][rng.integers(len(self.utterances_of[spk2]))]
        length = int(min(self.frames[utt1], self.frames[utt2], self.segment_samples))
        starts = [int(rng.integers(self.frames[utt] - length + 1)) for utt in (utt1, utt2)]
        return utt1, utt2, starts, length, draw_levels_db(rng), hard

    def __getitem__(self, index):
        utt1, utt2, starts, length, levels, hard = self.draw(index)
        crops = [load_mono(self.paths[utt], start, length)[0] for utt, start in zip((utt1, utt2), starts)]
        mixture, source1, source2 = mix_pair(crops[0], crops[1], levels)
        return {
            "id": f"dm_e{self.epoch}_{index}",
            "mix_sig": torch.from_numpy(mixture),
            "s1_sig": torch.from_numpy(source1),
            "s2_sig": torch.from_numpy(source2),
            "hard_draw": hard,
        }
