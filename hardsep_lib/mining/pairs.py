"""Speaker-level features, the scored speaker-pair table, and the hard-pair rule (method.md).

Pair distances: pitch = |12 log2(f0_a / f0_b)| semitones (treats low and high voices alike;
the Hz difference is reported too), embedding = cosine distance 1 - cos(e_a, e_b).
Rules:
    per-anchor (the paper's P_M): each speaker's closest ``hard_fraction`` partners under the
        criterion are its hard partners; a pair is hard when either speaker is among the
        other's. ``combined`` ranks partners by the mean of the two percentile ranks.
    thresholds: pitch_diff_hz < max_pitch_diff_hz and/or cos_dist < max_cos_dist.
hardness = 1 - percentile rank of the criterion's distance among all pairs (higher = harder).
"""

import logging
import math

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

CRITERIA = ("pitch", "embedding", "combined")
PAIR_COLUMNS = ["spk1", "spk2", "f0_1", "f0_2", "pitch_diff_hz", "pitch_diff_semitones", "cos_dist", "hardness", "is_hard"]


class MiningError(Exception):
    """Input that cannot be mined (the message says which)."""


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


def pct_rank(values):
    """Percentile rank in (0, 1] of each value among ``values`` (ties share the mean rank)."""
    return pd.Series(values).rank(pct=True).to_numpy()


def pair_table(speakers, embeddings, criterion="combined", hard_fraction=0.1, max_pitch_diff_hz=None, max_cos_dist=None):
    """One row per unordered speaker pair (PAIR_COLUMNS), computed on whole matrices.

    Uses O(n^2) memory: about 0.2 GB for 2,338 speakers (2.7 M pairs).
    """
    if criterion not in CRITERIA:
        raise MiningError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    f0 = speakers["f0_median_hz"].to_numpy(dtype=np.float64)
    n = len(f0)
    pitch_matrix = semitones(f0[:, None], f0[None, :])
    cos_matrix = 1.0 - embeddings.astype(np.float64) @ embeddings.astype(np.float64).T
    rows, cols = np.triu_indices(n, k=1)
    pitch_st, cos_dist = pitch_matrix[rows, cols], cos_matrix[rows, cols]
    distance = _criterion_distance(criterion, pitch_st, cos_dist)
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
    if max_pitch_diff_hz is None and max_cos_dist is None:
        table["is_hard"] = _per_anchor_hard(distance, rows, cols, n, hard_fraction)
    else:
        table["is_hard"] = threshold_hard(table, max_pitch_diff_hz, max_cos_dist)
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


def _per_anchor_hard(distance, rows, cols, n, hard_fraction):
    """The paper's P_M rule: pair (a, b) is hard when b is among a's closest
    ceil(hard_fraction (n - 1)) partners, or a among b's."""
    matrix = np.full((n, n), np.inf)
    matrix[rows, cols] = distance
    matrix[cols, rows] = distance
    k = max(1, math.ceil(hard_fraction * (n - 1)))
    closest = np.argpartition(matrix, k - 1, axis=1)[:, :k]
    member = np.zeros((n, n), dtype=bool)
    member[np.repeat(np.arange(n), k), closest.ravel()] = True
    return member[rows, cols] | member[cols, rows]


def hardness_threshold(table):
    """The lowest hardness that the rule marks hard in ``table``, to place new pairs (test
    mixtures of unseen speakers) in the training rule's hard region: a new pair is hard
    when its hardness against the training distances reaches the share of hard pairs."""
    share = float(table["is_hard"].mean())
    return float(np.quantile(table["hardness"], 1.0 - share)) if share > 0 else math.inf


def _share_at_or_below(reference, values):
    """Share of ``reference`` values <= each of ``values`` (an empirical CDF)."""
    reference = np.sort(np.asarray(reference, dtype=np.float64))
    return np.searchsorted(reference, values, side="right") / len(reference)


def hardness_against(pairs, criterion, pitch_st, cos_dist):
    """Hardness of new pairs (arrays of semitone and cosine distances) on the scale of a mined
    pair table: 1 - the share of mined pairs whose criterion distance is at most theirs."""
    reference_pitch = pairs["pitch_diff_semitones"].to_numpy()
    reference_cos = pairs["cos_dist"].to_numpy()
    if criterion == "combined":
        distance = (_share_at_or_below(reference_pitch, pitch_st) + _share_at_or_below(reference_cos, cos_dist)) / 2.0
    else:
        distance = pitch_st if criterion == "pitch" else cos_dist
    reference = _criterion_distance(criterion, reference_pitch, reference_cos)
    return 1.0 - _share_at_or_below(reference, distance)
