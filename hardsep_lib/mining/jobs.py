"""The three jobs of mine_hard.py: mine speaker pairs, featurise fixed mixtures, correlate."""

import json
import logging
import os

import numpy as np
import pandas as pd

from hardsep_lib.data.audio import SkipReport, load_mono
from hardsep_lib.data.mixing import energy_ratio_db
from hardsep_lib.io_utils import write_csv, write_json
from hardsep_lib.mining import correlation
from hardsep_lib.mining import pairs as pair_rules
from hardsep_lib.mining.features import compute_features, load_features
from hardsep_lib.mining.pair_stream import SAMPLE_PAIRS, PairStream, reference_path

logger = logging.getLogger(__name__)


def sidecar_path(pairs_csv):
    """The JSON sidecar recording how a pair CSV was mined: ``pairs.csv`` -> ``pairs.json``."""
    return os.path.splitext(pairs_csv)[0] + ".json"


def read_pairs(path):
    """A mined pair CSV as a DataFrame (speaker ids as strings)."""
    return pd.read_csv(path, dtype={"spk1": str, "spk2": str})


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


def mine_pairs(sources_csv, output, settings, cache_dir, speakers_out=None, workers=1,
               rule=pair_rules.HardPairRule(), max_utts_per_speaker=None, seed=0, num_shards=1, shard_index=0,
               pairs_output="auto"):
    """Mines the speaker-pair CSV, its JSON sidecar and reference distributions (and the
    speakers CSV when asked); returns the sidecar (a dict). The CSV is not read back: at
    20,000 speakers it holds gigabytes.

    The table is computed and written in blocks of anchors (pair_stream.PairStream);
    ``pairs_output`` is ``all`` (every pair), ``hard`` (the rows hard for either side) or
    ``auto`` (all up to pair_stream.AUTO_ALL_MAX_SPEAKERS speakers). With ``num_shards`` > 1
    only this shard's features are computed into the shared cache; a final call without
    sharding then finds them all cached and writes the tables.
    """
    sources = read_table(sources_csv, ["spk_id", "wav"], "sources CSV")
    duplicated = sources.duplicated(["spk_id", "wav"])
    if duplicated.any():
        logger.warning("%s: %d duplicate row(s) (same speaker and file, e.g. %s) counted once", sources_csv,
                       int(duplicated.sum()), sources.loc[duplicated, "wav"].iloc[0])
        sources = sources[~duplicated]
    paths = sources["wav"].tolist()
    if num_shards > 1:
        compute_features(paths, settings, cache_dir, workers, num_shards, shard_index)
        logger.info("Shard %d/%d done; run again without --num_shards to merge.", shard_index, num_shards)
        return None
    features = _featurise(paths, settings, cache_dir, workers)
    speakers, embeddings = pair_rules.speaker_features(sources, features, max_utts_per_speaker, seed)
    if speakers_out:
        write_csv(speakers, speakers_out)
    stream = PairStream(speakers, embeddings, rule, seed=seed)
    n_rows, pairs_output = stream.write(output, pairs_output)
    sidecar = {
        "rule": rule.kind, **rule.to_dict(), "directional": True, "pairs_output": pairs_output,
        "n_rows_written": n_rows, "reference": os.path.basename(reference_path(output)),
        "percentile_ranks": "exact (every pair)" if stream.exact else f"a seeded sample of {SAMPLE_PAIRS} pairs",
        "hard_partners_per_anchor": rule.partners_per_anchor(len(speakers)) if rule.kind == "per_anchor" else None,
        "hardness_threshold": stream.hardness_threshold() if rule.kind == "per_anchor" else None,
        "f0_method": settings.f0_method, "embedding": settings.embedding,
        "max_utts_per_speaker": max_utts_per_speaker, "seed": seed, "sources": os.path.abspath(sources_csv),
        "n_speakers": len(speakers), "n_speakers_in_sources": int(sources["spk_id"].nunique()),
        "n_utterances_used": len(features), "n_pairs": stream.n_pairs, "n_hard_pairs": stream.n_hard,
    }
    write_json(sidecar, sidecar_path(output))
    logger.info("Wrote %s: %d rows (%s) of %d pairs of %d speakers, %d hard", output, n_rows, pairs_output,
                stream.n_pairs, len(speakers), stream.n_hard)
    return sidecar


def _utterance_median(features):
    f0 = features[0]
    return float(np.median(f0)) if len(f0) else np.nan


def _unit(vector):
    return vector / (np.linalg.norm(vector) + 1e-12)


def _test_speakers(mixtures, features):
    """Speaker-level features of the speakers of fixed mixtures, as the training speakers are
    described: {spk_id: (pitch median over the voiced frames of its utterances in Hz, unit
    mean embedding)}."""
    sources = pd.concat([
        mixtures[[f"{side}_spk", f"{side}_wav"]].set_axis(["spk_id", "wav"], axis=1) for side in ("s1", "s2")
    ]).drop_duplicates()
    speakers, embeddings = pair_rules.speaker_features(sources, features)
    return dict(zip(speakers["spk_id"], zip(speakers["f0_median_hz"], embeddings)))


def mine_mixtures(mixtures_csv, output, settings, cache_dir, workers=1, pairs_csv=None):
    """Pair features of each fixed mixture (s1_wav, s2_wav, s1_spk, s2_spk).

    Utterance level (the correlation analysis): ``f0_1, f0_2, pitch_diff_hz,
    pitch_diff_semitones, cos_dist, energy_ratio_db`` of the two source files. Speaker level
    (the hard labelling): ``spk_pitch_diff_hz, spk_pitch_diff_semitones, spk_cos_dist`` from
    each speaker's pitch median and mean embedding over all its utterances in the manifest,
    as the training speakers were mined. With ``pairs_csv`` (and its sidecar), ``hardness``
    and ``is_hard`` place the speaker-level pair on the training rule's scale; without it
    they are left empty (a warning says so). A mixture whose source is unusable or unvoiced
    is skipped and reported.
    """
    mixtures = read_table(mixtures_csv, ["ID", "s1_wav", "s2_wav", "s1_spk", "s2_spk"], "mixtures CSV")
    rule_parts = _training_rule(pairs_csv) if pairs_csv else None  # read before any audio
    features = _featurise(mixtures["s1_wav"].tolist() + mixtures["s2_wav"].tolist(), settings, cache_dir, workers)
    speakers = _test_speakers(mixtures, features)
    report = SkipReport("mixture features")
    rows = []
    for mixture in mixtures.itertuples():
        if mixture.s1_wav not in features or mixture.s2_wav not in features:
            report.add(mixture.ID, "a source file is unusable")
            continue
        f0_1, f0_2 = _utterance_median(features[mixture.s1_wav]), _utterance_median(features[mixture.s2_wav])
        if np.isnan(f0_1) or np.isnan(f0_2) or mixture.s1_spk not in speakers or mixture.s2_spk not in speakers:
            report.add(mixture.ID, "a source has no voiced frame")
            continue
        embedding_1, embedding_2 = _unit(features[mixture.s1_wav][1]), _unit(features[mixture.s2_wav][1])
        (spk_f0_1, spk_embedding_1), (spk_f0_2, spk_embedding_2) = speakers[mixture.s1_spk], speakers[mixture.s2_spk]
        rows.append({
            "ID": mixture.ID, "s1_spk": mixture.s1_spk, "s2_spk": mixture.s2_spk, "f0_1": f0_1, "f0_2": f0_2,
            "pitch_diff_hz": abs(f0_1 - f0_2), "pitch_diff_semitones": float(pair_rules.semitones(f0_1, f0_2)),
            "cos_dist": float(1.0 - embedding_1 @ embedding_2),
            "energy_ratio_db": energy_ratio_db(load_mono(mixture.s1_wav)[0], load_mono(mixture.s2_wav)[0]),
            "spk_pitch_diff_hz": abs(spk_f0_1 - spk_f0_2),
            "spk_pitch_diff_semitones": float(pair_rules.semitones(spk_f0_1, spk_f0_2)),
            "spk_cos_dist": float(1.0 - spk_embedding_1 @ spk_embedding_2),
        })
    logger.log(logging.WARNING if report.skipped else logging.INFO, report.summary())
    table = pd.DataFrame(rows)
    if rule_parts is None:
        logger.warning("No --pairs: hardness and is_hard are left empty (no training rule to place the mixtures on)")
        table["hardness"], table["is_hard"] = np.nan, pd.NA
    else:
        speaker_level = table[["spk_pitch_diff_hz", "spk_pitch_diff_semitones", "spk_cos_dist"]].set_axis(
            ["pitch_diff_hz", "pitch_diff_semitones", "cos_dist"], axis=1)
        table["hardness"], table["is_hard"] = pair_rules.label_new_pairs(*rule_parts[:3], speaker_level)
        logger.info("%d of %d mixtures are hard under the training rule (%.1f%%; %.1f%% of the training pairs)",
                    int(table["is_hard"].sum()), len(table), 100 * table["is_hard"].mean(), 100 * rule_parts[3])
    write_csv(table, output)
    logger.info("Wrote %s: %d mixtures", output, len(table))
    return table


def _training_rule(pairs_csv):
    """(reference distributions, HardPairRule, hardness threshold, share of hard pairs) of a
    mined pair CSV, from its sidecar and reference .npz (or, for a CSV mined before those
    existed, from its rows, which then hold every pair)."""
    if not os.path.isfile(sidecar_path(pairs_csv)):
        raise pair_rules.MiningError(f"{sidecar_path(pairs_csv)} (the rule of {pairs_csv}) not found")
    with open(sidecar_path(pairs_csv)) as handle:
        sidecar = json.load(handle)
    rule = pair_rules.HardPairRule.from_dict(sidecar)
    if os.path.isfile(reference_path(pairs_csv)):
        with np.load(reference_path(pairs_csv), allow_pickle=False) as arrays:
            reference = {key: arrays[key] for key in ("pitch_diff_semitones", "cos_dist", "criterion")}
    else:
        pairs = read_table(pairs_csv, ["pitch_diff_semitones", "cos_dist"], "pair CSV")
        reference = pair_rules.reference_distributions(pairs, rule)
    share = sidecar["n_hard_pairs"] / sidecar["n_pairs"]
    return reference, rule, sidecar.get("hardness_threshold"), share


def run_correlation(results_csv, features_csv, output_json, plot=None):
    """Joins results and features, prints r next to the paper's, saves JSON (and a plot)."""
    for stale in (output_json, plot):  # a failed run must not leave an older output looking current
        if stale and os.path.exists(stale):
            os.remove(stale)
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
