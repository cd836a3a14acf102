"""Two-speaker mixing, shared by the fixed mixture sets and dynamic mixing.

Follows SpeechBrain's WSJ0Mix dynamic mixing: each source is set to a level drawn around
-27.4 dBFS (its RMS), the two are summed, and sources and mixture are scaled together so the
largest peak is 0.9 (the scaled sources stay exact targets: mix = s1 + s2).
"""

import numpy as np

# SpeechBrain's WSJ0Mix dynamic mixing draws source levels from N(-27.43, 2.57) dB, clipped.
LEVEL_MEAN_DB = -27.43
LEVEL_STD_DB = 2.57
LEVEL_RANGE_DB = (-45.0, 0.0)
PEAK = 0.9
EPS = 1e-8


def draw_levels_db(rng, count=2):
    """Source levels in dBFS (RMS), one per source, from a numpy Generator."""
    levels = rng.normal(LEVEL_MEAN_DB, LEVEL_STD_DB, size=count)
    return np.clip(levels, *LEVEL_RANGE_DB)


def set_level(signal, level_db):
    """Scales a (samples,) signal so its RMS is ``level_db`` dBFS."""
    rms = np.sqrt(np.mean(signal.astype(np.float64) ** 2)) + EPS
    return (signal * (10.0 ** (level_db / 20.0) / rms)).astype(np.float32)


def mix_pair(source1, source2, levels_db):
    """Mixes two (samples,) sources at the given dBFS levels, cut to the shorter one.

    Returns (mixture, source1, source2), each float32 (samples,), with mixture = s1 + s2
    and the largest absolute sample of the three equal to PEAK.
    """
    length = min(len(source1), len(source2))
    sources = np.stack(
        [set_level(source1[:length], levels_db[0]), set_level(source2[:length], levels_db[1])]
    )
    mixture = sources.sum(axis=0)
    scale = PEAK / max(np.abs(mixture).max(), np.abs(sources).max(), EPS)
    return mixture * scale, sources[0] * scale, sources[1] * scale


def energy_ratio_db(source1, source2):
    """Level of source1 relative to source2 in dB (10 log10 of the energy ratio)."""
    energy1 = float(np.sum(np.square(source1, dtype=np.float64))) + EPS
    energy2 = float(np.sum(np.square(source2, dtype=np.float64))) + EPS
    return 10.0 * np.log10(energy1 / energy2)
