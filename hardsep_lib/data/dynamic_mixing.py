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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import torch

from hardsep_lib.data.audio import load_mono
from hardsep_lib.data.mixing import draw_levels_db, mix_pair
from hardsep_lib.errors import DataError

logger = logging.getLogger(__name__)


class HardPairError(DataError):
    """A pair CSV that cannot drive hard re-sampling."""


class PairSampler:
    """Draws speaker pairs: plain DM, or with probability ``hard_ratio`` (P_S) a hard pair.

    Plain draws follow SpeechBrain: two distinct speakers with probability proportional to
    their utterance counts. A hard draw (the paper's Fig. 1) keeps the first speaker as anchor
    and takes its partner uniformly from the anchor's *own* hard partners (the closest P_M of
    its partners); an anchor without hard partners is replaced by one drawn (again by
    utterance count) among the speakers that have some. Every draw is O(1).

    Parameters
    ----------
    utterance_speakers : array of int, (n_utts,)
        The speaker index of each utterance.
    hard_partners : dict {int: array of int}, optional
        Each anchor's hard partners (speaker indices), from ``load_hard_partners``.
    hard_ratio : float in [0, 1]
        P_S.
    """

    def __init__(self, utterance_speakers, hard_partners=None, hard_ratio=0.0):
        self.utterance_speakers = np.asarray(utterance_speakers)
        self.hard_partners = hard_partners or {}
        self.hard_ratio = hard_ratio if self.hard_partners else 0.0
        has_partner = np.array([spk in self.hard_partners for spk in self.utterance_speakers])
        self.anchor_utterances = np.flatnonzero(has_partner)

    def _is_partner(self, anchor, partner):
        partners = self.hard_partners.get(int(anchor))
        return partners is not None and bool((partners == partner).any())

    def is_hard_pair(self, first, second):
        """True when either speaker is among the other's hard partners (the ``is_hard`` summary).
        A scan of two partner lists per call: no per-pair table is built at start-up."""
        return self._is_partner(first, second) or self._is_partner(second, first)

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


def _header(path):
    """The column names of a CSV (its first line)."""
    with open(path) as handle:
        return handle.readline().strip().split(",")


def load_hard_partners(pairs_csv, speakers):
    """{anchor speaker index: its hard partners' indices} from a mined pair CSV.

    ``speakers`` lists the training speakers (their index is their position). A row gives
    spk2 as a hard partner of spk1 when ``hard_for_spk1`` is true, and the reverse with
    ``hard_for_spk2``. An older CSV without those columns is read symmetrically from
    ``is_hard`` (with a warning). Pairs naming a speaker outside ``speakers`` are reported and
    ignored; a CSV with no usable hard row is an error. Only the needed columns are read.
    """
    wanted = ["spk1", "spk2", "is_hard", "hard_for_spk1", "hard_for_spk2"]
    try:  # pyarrow's streaming reader, only the needed columns: memory bounded by a batch
        header = _header(pairs_csv)
        reader = pa_csv.open_csv(pairs_csv, convert_options=pa_csv.ConvertOptions(
            include_columns=[column for column in wanted if column in header],
            column_types={"spk1": pa.string(), "spk2": pa.string()}))
    except (FileNotFoundError, pa.ArrowInvalid, OSError) as error:
        raise HardPairError(f"cannot read the pair CSV {pairs_csv}: {error}") from error
    columns = set(reader.schema.names)
    if {"spk1", "spk2", "hard_for_spk1", "hard_for_spk2"} <= columns:
        direction_columns = ("hard_for_spk1", "hard_for_spk2")
    elif {"spk1", "spk2", "is_hard"} <= columns:
        logger.warning("%s has no hard_for_spk1/hard_for_spk2 columns (mined before directional hardness): "
                       "read symmetrically from is_hard; mine it again for the per-anchor rule", pairs_csv)
        direction_columns = ("is_hard", "is_hard")
    else:
        raise HardPairError(f"{pairs_csv} lacks the spk1, spk2 and hard_for_spk1/hard_for_spk2 (or is_hard) "
                            "columns of mine_hard.py")
    value_set = pa.array(speakers, pa.string())
    anchor, partner, unknown, n_unknown = [], [], set(), 0
    try:
        for batch in reader:
            first = pc.index_in(batch.column("spk1"), value_set=value_set)  # null: not a training speaker
            second = pc.index_in(batch.column("spk2"), value_set=value_set)
            known = pc.and_(pc.is_valid(first), pc.is_valid(second))
            if not pc.all(known).as_py():
                n_unknown += len(batch) - pc.sum(known).as_py()
                for column in ("spk1", "spk2"):
                    unknown.update(pc.unique(pc.filter(batch.column(column), pc.invert(known))).to_pylist())
            for direction, this, other in zip(direction_columns, (first, second), (second, first)):
                keep = pc.and_(known, pc.fill_null(batch.column(direction), False))
                anchor.append(pc.filter(this, keep).to_numpy(zero_copy_only=False))
                partner.append(pc.filter(other, keep).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid as error:
        raise HardPairError(f"cannot read the pair CSV {pairs_csv}: {error}") from error
    if n_unknown:
        unknown = sorted(unknown - set(speakers))
        logger.warning("%s: %d pair(s) name %d speaker(s) absent from the training sources (e.g. %s); ignored",
                       pairs_csv, n_unknown, len(unknown), ", ".join(unknown[:5]))
    anchor = np.concatenate(anchor).astype(np.int64) if anchor else np.zeros(0, dtype=np.int64)
    partner = np.concatenate(partner).astype(np.int64) if partner else np.zeros(0, dtype=np.int64)
    if len(anchor) == 0:
        raise HardPairError(f"{pairs_csv} has no hard pair among the training speakers, but hard_ratio > 0")
    order = np.lexsort((partner, anchor))
    anchor, partner = anchor[order], partner[order]
    starts = np.flatnonzero(np.r_[True, anchor[1:] != anchor[:-1]])
    return {int(anchor[start]): chunk for start, chunk in zip(starts, np.split(partner, starts[1:]))}


class DynamicMixingDataset(torch.utils.data.Dataset):
    """On-the-fly two-speaker mixtures of exactly ``segment_samples`` samples from train_sources.csv.

    Item i of the current epoch: a speaker pair from PairSampler, one random utterance of
    each, a random crop of ``segment_samples`` of both, levels from mixing.draw_levels_db,
    mixed by mixing.mix_pair. Every item has the same length, so a batch holds no padding and
    a mixture's loss never depends on its batch partners. Utterances shorter than the crop are
    left out (as Asteroid's fixed-length segments do), and so are speakers left without one.

    Returns a dict with ``id``, ``mix_sig``/``s1_sig``/``s2_sig`` (float32 tensors
    (segment_samples,)), ``hard_draw`` (the pair replaced a plain draw) and ``hard_pair`` (the
    pair is hard by the mined rule in either direction, natural draws included). Call
    ``set_epoch`` before each epoch.
    """

    def __init__(self, sources, epoch_size, segment_samples, seed=0, hard_pairs_csv=None, hard_ratio=0.0):
        frames = np.round(sources["duration"].to_numpy() * sources["sample_rate"].to_numpy()).astype(np.int64)
        long_enough = frames >= segment_samples
        if not long_enough.all():
            logger.info("Dynamic mixing: %d of %d utterances are shorter than training_signal_len (%d samples) "
                        "and left out", int((~long_enough).sum()), len(frames), segment_samples)
        sources, frames = sources[long_enough], frames[long_enough]
        if sources.empty or sources["spk_id"].nunique() < 2:
            raise HardPairError(f"dynamic mixing needs utterances of at least {segment_samples} samples "
                                "(training_signal_len) from at least 2 speakers in train_sources.csv")
        self.paths = sources["wav"].to_list()
        self.frames = frames
        self.speakers = sorted(sources["spk_id"].astype(str).unique())
        speaker_of = sources["spk_id"].astype(str).map({spk: i for i, spk in enumerate(self.speakers)}).to_numpy()
        self.utterances_of = [np.flatnonzero(speaker_of == spk) for spk in range(len(self.speakers))]
        hard_partners = None
        if hard_pairs_csv:
            hard_partners = load_hard_partners(hard_pairs_csv, self.speakers)
        if hard_ratio > 0 and not hard_pairs_csv:
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
        """The recipe of item ``index``: (utterance 1, utterance 2, crop starts, levels in dB, hard draw)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        spk1, spk2, hard = self.pair_sampler.draw(rng)
        utt1 = self.utterances_of[spk1][rng.integers(len(self.utterances_of[spk1]))]
        utt2 = self.utterances_of[spk2][rng.integers(len(self.utterances_of[spk2]))]
        starts = [int(rng.integers(self.frames[utt] - self.segment_samples + 1)) for utt in (utt1, utt2)]
        return utt1, utt2, starts, draw_levels_db(rng), hard

    def __getitem__(self, index):
        utt1, utt2, starts, levels, hard = self.draw(index)
        crops = [load_mono(self.paths[utt], start, self.segment_samples)[0] for utt, start in zip((utt1, utt2), starts)]
        mixture, source1, source2 = mix_pair(crops[0], crops[1], levels)
        speakers = [self.pair_sampler.utterance_speakers[utt] for utt in (utt1, utt2)]
        return {
            "id": f"dm_e{self.epoch}_{index}",
            "mix_sig": torch.from_numpy(mixture),
            "s1_sig": torch.from_numpy(source1),
            "s2_sig": torch.from_numpy(source2),
            "hard_draw": hard,
            "hard_pair": hard or self.pair_sampler.is_hard_pair(*speakers),
        }
