"""The three jobs of mine_hard.py: mine speaker pairs, featurise fixed mixtures, correlate."""

import json
import logging
import os

import numpy as np
import pandas as pd

from hardsep_lib.mining import correlation
from hardsep_lib.mining import pairs as pair_rules
from hardsep_lib.data.audio import SkipReport, load_mono
from hardsep_lib.io_utils import write_csv, write_json
from hardsep_lib.data.mixing import energy_ratio_db
from hardsep_lib.mining.features import compute_features, load_features

logger = logging.getLogger(__name__)


def sidecar_path(pairs_csv):
    """The JSON sidecar recording how a pair CSV was mined: ``pairs.csv`` -> ``pairs.json``."""
    return os.path.splitext(pairs_csv)[0] + ".json"


def read_table(path, required, what):
    """A CSV with the ``required`` columns; raises MiningError when missing, empty or malformed."""
    if not os.path.isfile(path):
        raise pair_rules.MiningError(f"{what} not found: {path}")
    try:
        table = pd.read_csv(path, dtype={"spk_id": str, "s1_spk": str, "s2_spk": str, "ID": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise pair_rules.MiningError(f"{what} {path} is empty or malformed: {error}") from error
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise pair_rules.MiningError(f"{what} {path} lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise pair_rules.MiningError(f"{what} {path} has no rows")
    return table


def _featurise(paths, settings, cache_dir, workers):
    """Computes missing features, reports unusable files, and returns the loaded features."""
    errors = compute_features(paths, settings, cache_dir, workers)
    report = SkipReport("feature extraction")
    for path, error in sorted(errors.items()):
        report.add(path, error)
    logger.log(logging.WARNING if errors else logging.INFO, report.summary())
    return load_features(paths, settings, cache_dir)


def mine_pairs(sources_csv, output, settings, cache_dir, speakers_out=None, workers=1, criterion="combined",
               hard_fraction=0.1, max_pitch_diff_hz=None, max_cos_dist=None, max_utts_per_speaker=None,
               seed=0, num_shards=1, shard_index=0):
    """Mines the speaker-pair CSV and its JSON sidecar (and the speakers CSV when asked).

    With ``num_shards`` > 1 only this shard's features are computed into the shared cache; a
    final call without sharding then finds them all cached and writes the tables.
    """
    sources = read_table(sources_csv, ["spk_id", "wav"], "sources CSV")
    paths = sources["wav"].tolist()
    if num_shards > 1:
        compute_features(paths, settings, cache_dir, workers, num_shards, shard_index)
        logger.info("Shard %d/%d done; run again without --num_shards to merge.", shard_index, num_shards)
        return None
    features = _featurise(paths, settings, cache_dir, workers)
    speakers, embeddings = pair_rules.speaker_features(sources, features, max_utts_per_speaker, seed)
    pairs = pair_rules.pair_table(speakers, embeddings, criterion, hard_fraction, max_pitch_diff_hz, max_cos_dist)
    if speakers_out:
        write_csv(speakers, speakers_out)
    write_csv(pairs, output)
    rule = "per_anchor" if max_pitch_diff_hz is None and max_cos_dist is None else "thresholds"
    sidecar = {
        "rule": rule, "criterion": criterion, "hard_fraction": hard_fraction,
        "max_pitch_diff_hz": max_pitch_diff_hz, "max_cos_dist": max_cos_dist,
        "hardness_threshold": pair_rules.hardness_threshold(pairs) if rule == "per_anchor" else None,
        "f0_method": settings.f0_method, "embedding": settings.embedding,
        "max_utts_per_speaker": max_utts_per_speaker, "seed": seed, "sources": os.path.abspath(sources_csv),
        "n_speakers": len(speakers), "n_speakers_in_sources": int(sources["spk_id"].nunique()),
        "n_utterances_used": len(features), "n_pairs": len(pairs), "n_hard_pairs": int(pairs["is_hard"].sum()),
    }
    write_json(sidecar, sidecar_path(output))
    logger.info("Wrote %s: %d pairs of %d speakers, %d hard", output, len(pairs), len(speakers), sidecar["n_hard_pairs"])
    return pairs


def _utterance_median(features):
    f0 = features[0]
    return float(np.median(f0)) if len(f0) else np.nan


def _unit(vector):
    return vector / (np.linalg.norm(vector) + 1e-12)


def mine_mixtures(mixtures_csv, output, settings, cache_dir, workers=1, pairs_csv=None):
    """Pair features of each fixed mixture, from its two source files (s1_wav, s2_wav).

    With ``pairs_csv`` (and its sidecar), ``hardness``/``is_hard`` follow the training rule;
    otherwise they are left empty. A mixture whose source is unusable or unvoiced is skipped
    and reported.
    """
    mixtures = read_table(mixtures_csv, ["ID", "s1_wav", "s2_wav", "s1_spk", "s2_spk"], "mixtures CSV")
    features = _featurise(mixtures["s1_wav"].tolist() + mixtures["s2_wav"].tolist(), settings, cache_dir, workers)
    report = SkipReport("mixture features")
    rows = []
    for mixture in mixtures.itertuples():
        if mixture.s1_wav not in features or mixture.s2_wav not in features:
            report.add(mixture.ID, "a source file is unusable")
            continue
        f0_1, f0_2 = _utterance_median(features[mixture.s1_wav]), _utterance_median(features[mixture.s2_wav])
        if np.isnan(f0_1) or np.isnan(f0_2):
            report.add(mixture.ID, "a source has no voiced frame")
            continue
        embedding_1, embedding_2 = _unit(features[mixture.s1_wav][1]), _unit(features[mixture.s2_wav][1])
        rows.append({
            "ID": mixture.ID, "s1_spk": mixture.s1_spk, "s2_spk": mixture.s2_spk, "f0_1": f0_1, "f0_2": f0_2,
            "pitch_diff_hz": abs(f0_1 - f0_2), "pitch_diff_semitones": float(pair_rules.semitones(f0_1, f0_2)),
            "cos_dist": float(1.0 - embedding_1 @ embedding_2),
            "energy_ratio_db": energy_ratio_db(load_mono(mixture.s1_wav)[0], load_mono(mixture.s2_wav)[0]),
        })
    logger.log(logging.WARNING if report.skipped else logging.INFO, report.summary())
    table = pd.DataFrame(rows)
    table["hardness"], table["is_hard"] = _training_rule(table, pairs_csv)
    write_csv(table, output)
    logger.info("Wrote %s: %d mixtures", output, len(table))
    return table


def _training_rule(table, pairs_csv):
    """(hardness, is_hard) of new pairs under the rule recorded with a mined pair CSV."""
    if not pairs_csv:
        return np.nan, np.nan
    if not os.path.isfile(sidecar_path(pairs_csv)):
        raise pair_rules.MiningError(f"{sidecar_path(pairs_csv)} (the rule of {pairs_csv}) not found")
    with open(sidecar_path(pairs_csv)) as handle:
        sidecar = json.load(handle)
    pairs = read_table(pairs_csv, pair_rules.PAIR_COLUMNS, "pair CSV")
    hardness = pair_rules.hardness_against(pairs, sidecar["criterion"], table["pitch_diff_semitones"].to_numpy(),
                                       table["cos_dist"].to_numpy())
    if sidecar["rule"] == "thresholds":
        return hardness, pair_rules.threshold_hard(table, sidecar["max_pitch_diff_hz"], sidecar["max_cos_dist"])
    return hardness, hardness >= sidecar["hardness_threshold"]


def run_correlation(results_csv, features_csv, output_json, plot=None):
    """Joins results and features, prints r next to the paper's, saves JSON (and a plot)."""
    results = read_table(results_csv, ["si-snr_i"], "results CSV")
    features = read_table(features_csv, ["ID", "pitch_diff_hz", "cos_dist", "energy_ratio_db"], "features CSV")
    joined, unmatched = correlation.join_results(results, features)
    table = correlation.correlate(joined)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    write_json({"n_joined": len(joined), "unmatched": unmatched, "correlations": table.to_dict(orient="records")},
               output_json)
    if plot:
        correlation.scatter_plot(joined, table, plot)
    return table
