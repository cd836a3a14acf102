"""The ablation table: per-row means over seeds, seed spread, and paired deltas against a
reference row with a two-level bootstrap interval.

Layout read: ``<folder>/<row>/seed<k>/test_results.csv`` (train.py's columns; ``snt_id`` and
``si-snr_i``, ``sdr_i`` in dB). Per row and seed: mean SI-SNRi and SDRi, HSR_t (% of test
mixtures with SI-SNRi < t dB) and ``worst10`` (the mean SI-SNRi of the row's *own* worst 10%
of mixtures, CVaR at 10%: a tail measure that needs no threshold and no reference model).

Deltas are the row minus the reference, seed k paired with seed k, on the mixtures both
tested, averaged over the seeds. Their 95% interval comes from a two-level bootstrap: each
resample draws seeds with replacement, then, within each drawn seed, test mixtures with
replacement (the same indices for both rows). Resampling mixtures alone would call seed noise
an effect (two seeds of one configuration differ by tenths of a dB at CPU scale).
"""

import logging
import os
import re

import numpy as np
import pandas as pd

from hardsep_lib.errors import HardsepError
from hardsep_lib.evaluation.metrics import mined_hard_ids
from hardsep_lib.io_utils import atomic_path, write_csv

logger = logging.getLogger(__name__)

WORST_FRACTION = 0.1
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


class AblationError(HardsepError):
    """An ablation folder or config that cannot give a table."""


def worst_mean(values, fraction=WORST_FRACTION, axis=-1):
    """Mean of the lowest ``fraction`` of ``values`` along ``axis`` (at least one value).

    Example
    -------
    >>> float(worst_mean(np.arange(20.0)))
    0.5
    """
    values = np.asarray(values, dtype=np.float64)
    count = max(1, int(round(fraction * values.shape[axis])))
    return np.partition(values, count - 1, axis=axis).take(range(count), axis=axis).mean(axis=axis)


def hsr(values, threshold, axis=-1):
    """Hard sample rate in %: the share of SI-SNRi values (dB) below ``threshold`` dB."""
    return 100.0 * (np.asarray(values) < threshold).mean(axis=axis)


def read_runs(folder, rows):
    """{row: {seed: results DataFrame indexed by snt_id}} of the rows found under ``folder``."""
    runs = {}
    for row in rows:
        row_folder = os.path.join(folder, row)
        if not os.path.isdir(row_folder):
            continue
        for name in sorted(os.listdir(row_folder)):
            match = re.fullmatch(r"seed(\d+)", name)
            path = os.path.join(row_folder, name, "test_results.csv")
            if match and os.path.isfile(path):
                table = pd.read_csv(path, dtype={"snt_id": str})
                missing = {"snt_id", "si-snr_i", "sdr_i"} - set(table.columns)
                if missing:
                    raise AblationError(f"{path} lacks column(s) {', '.join(sorted(missing))}")
                table = table[table["snt_id"] != "avg"].set_index("snt_id")
                runs.setdefault(row, {})[int(match.group(1))] = table
    return runs


def seed_statistics(table, thresholds, hard_ids=None):
    """{statistic: value} of one row's one seed (``mined_hard``: mean SI-SNRi over the test
    mixtures labelled hard by the mined rule, when ``hard_ids`` are given)."""
    values = table["si-snr_i"].to_numpy(dtype=np.float64)
    stats = {"si-snr_i": values.mean(), "sdr_i": table["sdr_i"].to_numpy(dtype=np.float64).mean(),
             "worst10": worst_mean(values)}
    stats.update({f"HSR{threshold:g}": hsr(values, threshold) for threshold in thresholds})
    if hard_ids:
        stats["mined_hard"] = table.loc[table.index.intersection(sorted(hard_ids)), "si-snr_i"].mean()
    return stats


def read_mined_hard_ids(features_csv):
    """Ids of the test mixtures labelled hard (``mine_hard.py mixtures --pairs``), or None."""
    if not features_csv or not os.path.isfile(features_csv):
        return None
    features = pd.read_csv(features_csv, dtype={"ID": str})
    return mined_hard_ids(features) if "is_hard" in features else None


def _paired_arrays(row_runs, reference_runs):
    """{seed: (row SI-SNRi, reference SI-SNRi)} on the mixtures both tested, seeds in common."""
    pairs = {}
    for seed in sorted(set(row_runs) & set(reference_runs)):
        common = row_runs[seed].index.intersection(reference_runs[seed].index)
        pairs[seed] = (row_runs[seed].loc[common, "si-snr_i"].to_numpy(dtype=np.float64),
                       reference_runs[seed].loc[common, "si-snr_i"].to_numpy(dtype=np.float64))
    return pairs


def _delta_statistics(row, reference, hsr_threshold):
    """(delta mean, delta worst10, delta HSR) along the last axis."""
    return (row.mean(axis=-1) - reference.mean(axis=-1), worst_mean(row) - worst_mean(reference),
            hsr(row, hsr_threshold) - hsr(reference, hsr_threshold))


def two_level_bootstrap(pairs, hsr_threshold, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """95% intervals of the seed-averaged paired deltas (mean, worst10, HSR).

    pairs : {seed: (row values (n,), reference values (n,))}, paired by mixture.
    Returns a (3, 2) array of (low, high) for delta mean SI-SNRi, delta worst10 and delta HSR.
    """
    rng = np.random.default_rng(seed)
    seeds = sorted(pairs)
    drawn = rng.choice(len(seeds), size=(resamples, len(seeds)), replace=True)
    totals = np.zeros((3, resamples))
    for slot in range(len(seeds)):
        for position, key in enumerate(seeds):
            chosen = np.flatnonzero(drawn[:, slot] == position)
            if len(chosen) == 0:
                continue
            row, reference = pairs[key]
            indices = rng.integers(len(row), size=(len(chosen), len(row)))
            totals[:, chosen] += np.stack(_delta_statistics(row[indices], reference[indices], hsr_threshold))
    means = totals / len(seeds)
    return np.stack([np.percentile(means, 2.5, axis=1), np.percentile(means, 97.5, axis=1)], axis=1)


def ablation_table(runs, reference, thresholds=(5.0, 10.0), rows=None, hard_ids=None):
    """One line per row: means and seed SDs of the statistics, paired deltas and intervals.

    Columns: row, seeds, si-snr_i, si-snr_i_sd, sdr_i, HSR<t>, HSR<t>_sd (each threshold),
    worst10, worst10_sd, and delta_<stat>, delta_<stat>_low, delta_<stat>_high for si-snr_i,
    worst10 and HSR<first threshold>, against ``reference``.
    """
    if reference not in runs:
        raise AblationError(f"the reference row {reference!r} has no finished seed")
    first = f"HSR{thresholds[0]:g}"
    lines = []
    for row in rows or list(runs):
        if row not in runs:
            continue
        per_seed = pd.DataFrame({seed: seed_statistics(table, thresholds, hard_ids)
                                 for seed, table in runs[row].items()}).T
        line = {"row": row, "seeds": len(per_seed)}
        for column in per_seed.columns:
            line[column] = per_seed[column].mean()
            line[f"{column}_sd"] = per_seed[column].std(ddof=1) if len(per_seed) > 1 else np.nan
        pairs = _paired_arrays(runs[row], runs[reference])
        if pairs:
            deltas = np.mean([_delta_statistics(*pair, thresholds[0]) for pair in pairs.values()], axis=0)
            intervals = two_level_bootstrap(pairs, thresholds[0])
            for index, name in enumerate(("si-snr_i", "worst10", first)):
                line[f"delta_{name}"] = deltas[index]
                line[f"delta_{name}_low"], line[f"delta_{name}_high"] = intervals[index]
        lines.append(line)
    return pd.DataFrame(lines)


def noise_floor(runs, reference):
    """The spread between the reference row's seeds: {statistic: (sd over seeds, max - min)}."""
    per_seed = pd.DataFrame({seed: seed_statistics(table, ()) for seed, table in runs[reference].items()}).T
    return {column: (per_seed[column].std(ddof=1) if len(per_seed) > 1 else np.nan,
                     per_seed[column].max() - per_seed[column].min()) for column in ("si-snr_i", "worst10")}


def markdown(table, runs, reference, thresholds, n_hard=None):
    """The table as Markdown, with the noise floor and the interval method stated."""
    first = f"HSR{thresholds[0]:g}"
    columns = ["row", "seeds", "si-snr_i", "si-snr_i_sd", "sdr_i", "worst10", "worst10_sd"]
    for threshold in thresholds:
        columns += [f"HSR{threshold:g}", f"HSR{threshold:g}_sd"]
    if "mined_hard" in table:
        columns += ["mined_hard", "mined_hard_sd"]
    lines = ["| " + " | ".join(columns + ["delta si-snr_i [95% CI]", "delta worst10 [95% CI]",
                                           f"delta {first} [95% CI]"]) + " |",
             "|" + "---|" * (len(columns) + 3)]
    for record in table.to_dict(orient="records"):
        cells = [str(record["row"]), str(int(record["seeds"]))]
        cells += [f"{record[column]:.2f}" if np.isfinite(record[column]) else "-" for column in columns[2:]]
        for name in ("si-snr_i", "worst10", first):
            delta = record.get(f"delta_{name}", np.nan)
            cells.append("-" if not np.isfinite(delta) or record["row"] == reference else
                         f"{delta:+.2f} [{record[f'delta_{name}_low']:+.2f}, {record[f'delta_{name}_high']:+.2f}]")
        lines.append("| " + " | ".join(cells) + " |")
    floor = noise_floor(runs, reference)
    seeds = len(runs[reference])
    notes = [
        "",
        f"Values in dB (HSR in %), means over seeds; `_sd`: sample SD over seeds. Deltas: row minus "
        f"`{reference}`, seed k paired with seed k on the same test mixtures, averaged over seeds; "
        f"95% intervals from a two-level bootstrap ({BOOTSTRAP_RESAMPLES} resamples of seeds, then of "
        "mixtures within each seed). `worst10`: each row's own worst 10% of test mixtures."
        + (f" `mined_hard`: mean SI-SNRi of the {n_hard} test mixtures whose speakers the mined rule "
           "(combined criterion, speaker level) labels hard." if n_hard else ""),
        f"Noise floor (`{reference}` over its {seeds} seeds): SI-SNRi SD {floor['si-snr_i'][0]:.2f} dB "
        f"(range {floor['si-snr_i'][1]:.2f} dB), worst10 SD {floor['worst10'][0]:.2f} dB "
        f"(range {floor['worst10'][1]:.2f} dB).",
    ]
    if table["seeds"].min() < 2:
        notes.append("**With one seed, the intervals come from the test mixtures alone: they ignore seed "
                     "noise, which at this scale is as large as the effects.**")
    return "\n".join(lines + notes) + "\n"


def plot(runs, table, thresholds, path):
    """SI-SNRi distribution per row (empirical CDF, seeds pooled, worst 20% magnified) and
    HSR bars with seed error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (full, tail, bars) = plt.subplots(1, 3, figsize=(16, 4.8))
    for row in table["row"]:
        values = np.sort(np.concatenate([t["si-snr_i"].to_numpy() for t in runs[row].values()]))
        share = np.arange(1, len(values) + 1) / len(values)
        full.plot(values, share, label=row)
        tail.plot(values[share <= 0.2], share[share <= 0.2], label=row)
    full.set(xlabel="SI-SNRi (dB)", ylabel="share of test mixtures", title="SI-SNRi, empirical CDF (seeds pooled)")
    tail.set(xlabel="SI-SNRi (dB)", ylabel="share of test mixtures", title="worst 20%, magnified")
    full.legend(fontsize=7)
    width = 0.8 / len(thresholds)
    positions = np.arange(len(table))
    for index, threshold in enumerate(thresholds):
        column = f"HSR{threshold:g}"
        bars.bar(positions + index * width, table[column], width, yerr=table[f"{column}_sd"].fillna(0),
                 capsize=3, label=f"HSR{threshold:g} (SI-SNRi < {threshold:g} dB)")
    bars.set_xticks(positions + width * (len(thresholds) - 1) / 2, table["row"], rotation=45, ha="right", fontsize=7)
    bars.set(ylabel="% of test mixtures", title="hard sample rates (bars: seed SD)")
    bars.legend(fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, dpi=110, format="png")
    plt.close(figure)


def write_table(folder, rows, reference="dm", thresholds=(5.0, 10.0)):
    """Writes ablation.csv, ablation.md and ablation.png into ``folder``; returns the table.
    The mined-hard column uses ``folder/prep/test_features.csv`` when the run made one."""
    runs = read_runs(folder, rows)
    if not runs:
        raise AblationError(f"no finished run under {folder} (expected <row>/seed<k>/test_results.csv)")
    hard_ids = read_mined_hard_ids(os.path.join(folder, "prep", "test_features.csv"))
    table = ablation_table(runs, reference, thresholds, rows, hard_ids)
    write_csv(table, os.path.join(folder, "ablation.csv"))
    with atomic_path(os.path.join(folder, "ablation.md")) as tmp_path:
        with open(tmp_path, "w") as handle:
            handle.write(markdown(table, runs, reference, thresholds, len(hard_ids) if hard_ids else None))
    plot(runs, table, thresholds, os.path.join(folder, "ablation.png"))
    logger.info("Wrote %s/ablation.{csv,md,png}: %d rows", folder, len(table))
    return table
