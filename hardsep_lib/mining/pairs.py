"""Speaker-level features, the scored speaker-pair table, and the hard-pair rule (docs/method.md).

Pair distances: pitch = |12 log2(f0_a / f0_b)| semitones (treats low and high voices alike;
the Hz difference is reported too), embedding = cosine distance 1 - cos(e_a, e_b).
The hard-pair rule (one object, ``HardPairRule``, used by mining, the DM sampler and the
test-mixture labelling):
    per-anchor (the paper's P_M, Fig. 1): each speaker (anchor) ranks all its partners by the
        criterion's distance; its closest ``hard_fraction`` are *its* hard partners. Hardness is
        directional: ``hard_for_spk1`` says spk2 is among spk1's hard partners, ``hard_for_spk2``
        the reverse; ``is_hard`` (either direction) is a symmetric summary for reporting.
        ``combined`` ranks partners by the mean of the two percentile ranks.
    thresholds: pitch_diff_hz < max_pitch_diff_hz and/or cos_dist < max_cos_dist (symmetric).
hardness = 1 - percentile rank of the criterion's distance among all pairs (higher = harder).
"""

import dataclasses
import logging
import math
from typing import Optional

import numpy as np
import pandas as pd

from hardsep_lib.errors import HardsepError

logger = logging.getLogger(__name__)

CRITERIA = ("pitch", "embedding", "combined")
PAIR_COLUMNS = ["spk1", "spk2", "f0_1", "f0_2", "pitch_diff_hz", "pitch_diff_semitones", "cos_dist", "hardness",
                "hard_for_spk1", "hard_for_spk2", "is_hard"]


class MiningError(HardsepError):
    """Input that cannot be mined (the message says which)."""


@dataclasses.dataclass(frozen=True)
class HardPairRule:
    """Which speaker pairs are hard: the criterion, P_M and the optional absolute thresholds.

    Parameters
    ----------
    criterion : {"pitch", "embedding", "combined"}
        What "close" means: pitch-median distance (semitones), embedding cosine distance, or
        the mean of their percentile ranks.
    hard_fraction : float in (0, 1]
        P_M: the share of each anchor's partners (its closest ones) that are its hard partners.
    max_pitch_diff_hz, max_cos_dist : float, optional
        The threshold rule instead of P_M: a pair is hard when every given bound holds
        (``pitch_diff_hz`` < bound in Hz, ``cos_dist`` < bound).

    Example
    -------
    >>> rule = HardPairRule("pitch", hard_fraction=0.25)
    >>> rule.kind, rule.partners_per_anchor(9)
    ('per_anchor', 2)
    >>> HardPairRule.from_dict(rule.to_dict()) == rule
    True
    """

    criterion: str = "combined"
    hard_fraction: float = 0.1
    max_pitch_diff_hz: Optional[float] = None
    max_cos_dist: Optional[float] = None

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise MiningError(f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not 0.0 < self.hard_fraction <= 1.0:
            raise MiningError(f"hard_fraction (P_M) must be in (0, 1], got {self.hard_fraction}")
        for name in ("max_pitch_diff_hz", "max_cos_dist"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise MiningError(f"{name} must be > 0, got {value}")

    @property
    def kind(self):
        """``per_anchor`` (P_M) or ``thresholds``."""
        return "per_anchor" if self.max_pitch_diff_hz is None and self.max_cos_dist is None else "thresholds"

    def partners_per_anchor(self, n_speakers):
        """How many hard partners each anchor has among ``n_speakers``: ceil(P_M (n - 1)), >= 1."""
        return max(1, math.ceil(self.hard_fraction * (n_speakers - 1)))

    def distance(self, pitch_st, cos_dist):
        """The distance this rule ranks pairs by (lower = closer = harder)."""
        return _criterion_distance(self.criterion, pitch_st, cos_dist)

    def to_dict(self):
        """The rule's fields, for a pair CSV's JSON sidecar."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record):
        """The rule recorded in a sidecar (other keys are ignored)."""
        return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls) if field.name in record})


def speaker_features(sources, features, max_utts=None, seed=0):
    """Per-speaker pitch median and mean embedding from per-utterance features.

    Arguments
    ---------
    sources : DataFrame with ``spk_id`` and ``wav`` columns (train_sources.csv).
    features : {wav path: (voiced F0 in Hz (n,), embedding (dim,))}; missing paths were unusable.
    max_utts : at most this many randomly chosen (seeded) usable utterances per speaker.

    Returns (speakers DataFrame: spk_id, f0_median_hz, n_utts, n_voiced_frames,
    n_unvoiced_utts; embeddings float32 (n_speakers, dim), L2-normalised), sorted by spk_id.
    Speakers with no voiced frame at all are reported and left out.
    """
    rng = np.random.default_rng(seed)
    rows, embeddings = [], []
    for spk_id, group in sources.groupby("spk_id", sort=True):
        paths = [path for path in group["wav"] if path in features]
        if max_utts and len(paths) > max_utts:
            paths = sorted(rng.choice(paths, size=max_utts, replace=False))
        voiced = [features[path][0] for path in paths]
        n_unvoiced = sum(1 for f0 in voiced if len(f0) == 0)
        if not paths or n_unvoiced == len(paths):
            logger.warning("Speaker %s has no usable voiced utterance; left out of the pair table", spk_id)
            continue
        mean_embedding = np.mean([features[path][1] for path in paths], axis=0)
        embeddings.append(mean_embedding / (np.linalg.norm(mean_embedding) + 1e-12))
        all_f0 = np.concatenate(voiced)
        rows.append(
            {
                "spk_id": str(spk_id),
                "f0_median_hz": float(np.median(all_f0)),
                "n_utts": len(paths),
                "n_voiced_frames": int(len(all_f0)),
                "n_unvoiced_utts": n_unvoiced,
            }
        )
    if len(rows) < 2:
        raise MiningError(f"{len(rows)} speaker(s) with usable audio: at least 2 are needed to form pairs")
    return pd.DataFrame(rows), np.stack(embeddings).astype(np.float32)


def semitones(f0_a, f0_b):
    """|12 log2(f0_a / f0_b)|: the pitch distance in semitones (arrays in Hz)."""
    return np.abs(12.0 * np.log2(np.asarray(f0_a) / np.asarray(f0_b)))


def mid_rank(sorted_reference, values):
    """Percentile rank in (0, 1] of ``values`` among a sorted reference distribution (ties
    share their mean rank): pandas' ``rank(pct=True)`` when the reference is the values."""
    values = np.asarray(values)
    flat = values.ravel()
    # Queries in sorted order walk the reference once (cache-friendly): several times faster
    # than random-order queries into a reference of millions of values.
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.shape, dtype=np.float64)
    queries = flat[order]
    ranks[order] = (np.searchsorted(sorted_reference, queries, side="left")
                    + np.searchsorted(sorted_reference, queries, side="right") + 1) / 2.0 / len(sorted_reference)
    return ranks.reshape(values.shape)


def pct_rank(values):
    """Percentile rank in (0, 1] of each value among ``values`` (ties share the mean rank)."""
    return mid_rank(np.sort(values), values)


def _closest(distance, k):
    """(rows, n) bool: each row's ``k`` smallest distances, ties broken by column index (the
    first k of a stable sort, found in linear time with a partition)."""
    kth = np.partition(distance, k - 1, axis=1)[:, k - 1:k]
    less = distance < kth
    ties = distance == kth
    return less | (ties & (np.cumsum(ties, axis=1) <= k - less.sum(axis=1, keepdims=True)))


def pair_table(speakers, embeddings, rule=HardPairRule()):
    """One row per unordered speaker pair (PAIR_COLUMNS), computed on whole matrices.

    The in-memory reference for small corpora and tests (O(n^2) floats: 0.2 GB at 2,338
    speakers); mining writes the same table in blocks with ``pair_stream.PairStream``.
    """
    f0 = speakers["f0_median_hz"].to_numpy(dtype=np.float64)
    n = len(f0)
    pitch_matrix = semitones(f0[:, None], f0[None, :])
    cos_matrix = 1.0 - embeddings.astype(np.float64) @ embeddings.astype(np.float64).T
    rows, cols = np.triu_indices(n, k=1)
    pitch_st, cos_dist = pitch_matrix[rows, cols], cos_matrix[rows, cols]
    distance = rule.distance(pitch_st, cos_dist)
    ids = speakers["spk_id"].to_numpy()
    table = pd.DataFrame(
        {
            "spk1": ids[rows],
            "spk2": ids[cols],
            "f0_1": f0[rows],
            "f0_2": f0[cols],
            "pitch_diff_hz": np.abs(f0[rows] - f0[cols]),
            "pitch_diff_semitones": pitch_st,
            "cos_dist": cos_dist,
            "hardness": 1.0 - pct_rank(distance),
        }
    )
    if rule.kind == "per_anchor":
        table["hard_for_spk1"], table["hard_for_spk2"] = _per_anchor_hard(distance, rows, cols, n,
                                                                           rule.partners_per_anchor(n))
    else:
        table["hard_for_spk1"] = table["hard_for_spk2"] = threshold_hard(table, rule.max_pitch_diff_hz,
                                                                         rule.max_cos_dist)
    table["is_hard"] = table["hard_for_spk1"] | table["hard_for_spk2"]
    return table[PAIR_COLUMNS]


def _criterion_distance(criterion, pitch_st, cos_dist):
    """The distance a criterion ranks pairs by (lower = closer = harder)."""
    if criterion == "pitch":
        return pitch_st
    if criterion == "embedding":
        return cos_dist
    return (pct_rank(pitch_st) + pct_rank(cos_dist)) / 2.0


def threshold_hard(table, max_pitch_diff_hz, max_cos_dist):
    """Absolute-threshold rule: every given bound must hold."""
    hard = np.ones(len(table), dtype=bool)
    if max_pitch_diff_hz is not None:
        hard &= table["pitch_diff_hz"].to_numpy() < max_pitch_diff_hz
    if max_cos_dist is not None:
        hard &= table["cos_dist"].to_numpy() < max_cos_dist
    return hard


def _per_anchor_hard(distance, rows, cols, n, k):
    """The paper's P_M rule, per direction: (b is among a's closest ``k`` partners, a is
    among b's) for each pair (a, b) = (rows, cols)."""
    matrix = np.full((n, n), np.inf)
    matrix[rows, cols] = distance
    matrix[cols, rows] = distance
    member = _closest(matrix, k)
    return member[rows, cols], member[cols, rows]


def _share_at_or_below(reference, values):
    """Share of ``reference`` values <= each of ``values`` (an empirical CDF)."""
    reference = np.sort(np.asarray(reference, dtype=np.float64))
    return np.searchsorted(reference, values, side="right") / len(reference)


def reference_distributions(pairs, rule):
    """{pitch_diff_semitones, cos_dist, criterion}: the mined pairs' distance distributions,
    from a pair table holding every pair."""
    pitch, cos = pairs["pitch_diff_semitones"].to_numpy(), pairs["cos_dist"].to_numpy()
    return {"pitch_diff_semitones": pitch, "cos_dist": cos, "criterion": rule.distance(pitch, cos)}


def hardness_against(reference, rule, pitch_st, cos_dist):
    """Hardness of new pairs (arrays of semitone and cosine distances) on the scale of the
    mined pairs (``reference_distributions``): 1 - the share of mined pairs whose criterion
    distance is at most theirs."""
    if rule.criterion == "combined":
        distance = (_share_at_or_below(reference["pitch_diff_semitones"], pitch_st)
                    + _share_at_or_below(reference["cos_dist"], cos_dist)) / 2.0
    else:
        distance = pitch_st if rule.criterion == "pitch" else cos_dist
    return 1.0 - _share_at_or_below(reference["criterion"], distance)


def label_new_pairs(reference, rule, threshold, table):
    """(hardness, is_hard) of new pairs (``table`` with pitch_diff_hz, pitch_diff_semitones,
    cos_dist) under the training ``rule``, on the scale of the mined pairs' ``reference``
    distributions: the threshold rule directly, the per-anchor rule as hardness >=
    ``threshold`` (the sidecar's ``hardness_threshold``)."""
    hardness = hardness_against(reference, rule, table["pitch_diff_semitones"].to_numpy(), table["cos_dist"].to_numpy())
    if rule.kind == "thresholds":
        return hardness, threshold_hard(table, rule.max_pitch_diff_hz, rule.max_cos_dist)
    return hardness, hardness >= threshold
