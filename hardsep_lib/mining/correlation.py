"""Correlation analysis: Pearson r between per-mixture SI-SNRi and the pair features."""

import logging

import numpy as np
import pandas as pd
from scipy import stats

from hardsep_lib.errors import HardsepError

logger = logging.getLogger(__name__)

# The paper's Fig. 2 (Conv-TasNet, 3,000 test mixtures). The energy ratio is correlated as
# its magnitude |dB|: which source is "s1" is arbitrary, so only the level gap is meaningful.
PAPER_R = {"pitch_diff_hz": 0.443, "cos_dist": 0.447, "abs_energy_ratio_db": -0.026}


class CorrelationError(HardsepError):
    """Inputs that cannot be joined or correlated."""


def join_results(results, features):
    """Inner join of a test_results.csv (``snt_id`` or ``ID``, ``si-snr_i``) with mixture
    features on the mixture id; logs how many rows of each side found no partner."""
    id_column = "snt_id" if "snt_id" in results.columns else "ID"
    if id_column not in results.columns or "si-snr_i" not in results.columns:
        raise CorrelationError("results CSV needs an snt_id (or ID) and a si-snr_i column")
    results = results[results[id_column].astype(str) != "avg"].rename(columns={id_column: "ID"})
    results = results.assign(ID=results["ID"].astype(str))
    features = features.assign(ID=features["ID"].astype(str))
    joined = results[["ID", "si-snr_i"]].merge(features, on="ID", how="inner")
    if joined.empty:
        raise CorrelationError("no mixture id of the results CSV matches a row of the features CSV")
    unmatched_results = len(results) - len(joined)
    unmatched_features = len(features) - len(joined)
    if unmatched_results or unmatched_features:
        logger.warning("Unmatched rows: %d in results, %d in features", unmatched_results, unmatched_features)
    joined["abs_energy_ratio_db"] = joined["energy_ratio_db"].abs()
    return joined, {"results": int(unmatched_results), "features": int(unmatched_features)}


def correlate(joined):
    """Pearson r and p (scipy.stats.pearsonr) of SI-SNRi against each feature of PAPER_R."""
    rows = []
    for column in ["si-snr_i", *PAPER_R]:
        infinite = int(np.isinf(joined[column].to_numpy(dtype=np.float64)).sum())
        if infinite:
            raise CorrelationError(f"{infinite} value(s) of {column} are infinite: fix the results/features "
                                   "before correlating (Pearson r would be NaN)")
    for feature, paper_r in PAPER_R.items():
        valid = joined[["si-snr_i", feature]].dropna()
        result = stats.pearsonr(valid[feature], valid["si-snr_i"])
        rows.append({"feature": feature, "n": len(valid), "r": float(result.statistic),
                     "p": float(result.pvalue), "paper_r": paper_r})
    return pd.DataFrame(rows)


def scatter_plot(joined, table, path):
    """One scatter panel per feature (SI-SNRi on y) with its least-squares line, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(table), figsize=(4.5 * len(table), 4), squeeze=False)
    for axis, row in zip(axes[0], table.itertuples()):
        x, y = joined[row.feature].to_numpy(), joined["si-snr_i"].to_numpy()
        axis.scatter(x, y, s=8, alpha=0.6)
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 2)
        axis.plot(grid, slope * grid + intercept, color="C3")
        axis.set_xlabel(row.feature)
        axis.set_ylabel("SI-SNRi (dB)")
        axis.set_title(f"r = {row.r:.3f} (paper {row.paper_r:+.3f})")
    figure.tight_layout()
    from hardsep_lib.io_utils import atomic_path

    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, dpi=120, format="png")
    plt.close(figure)
