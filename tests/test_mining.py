"""Hard-pair mining on espeak-ng speakers generated in the test session."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import save_speechbrain_encoder
from scipy import stats

from hardsep_lib.data.audio import load_mono, resample
from hardsep_lib.mining import pairs as pair_rules
from hardsep_lib.mining.embeddings import make_backend
from hardsep_lib.mining.features import FeatureSettings, compute_features
from hardsep_lib.mining.jobs import (
    mine_mixtures,
    mine_pairs,
    read_pairs,
    read_table,
    run_correlation,
    sidecar_path,
)
from hardsep_lib.mining.pitch import voiced_f0

SETTINGS = FeatureSettings()


@pytest.fixture(scope="session")
def mined(synth_prepared, tmp_path_factory):
    """Pair and speaker tables of every synth speaker (all splits, so both genders' twins)."""
    data_folder, save = synth_prepared
    folder = tmp_path_factory.mktemp("mined")
    training_sources = read_table(os.path.join(save, "train_sources.csv"), ["spk_id"], "sources CSV")
    every = pd.DataFrame(
        [{"ID": f, "spk_id": spk, "wav": os.path.join(data_folder, spk, f)}
         for spk in sorted(os.listdir(data_folder)) if os.path.isdir(os.path.join(data_folder, spk))
         for f in sorted(os.listdir(os.path.join(data_folder, spk)))]
    )
    assert len(training_sources) < len(every)
    sources_csv = str(folder / "all_sources.csv")
    every.to_csv(sources_csv, index=False)
    output = str(folder / "pairs.csv")
    mine_pairs(sources_csv, output, SETTINGS, str(folder / "cache"), speakers_out=str(folder / "speakers.csv"),
                       workers=2)
    return {"pairs": read_pairs(output), "output": output, "sources_csv": sources_csv, "cache": str(folder / "cache"),
            "speakers": pd.read_csv(folder / "speakers.csv"), "corpus": data_folder, "folder": folder}


def test_pitch_medians_of_low_and_high_voices(mined, synth_prepared):
    speakers = mined["speakers"].set_index("spk_id")
    table = pd.read_csv(os.path.join(synth_prepared[0], "speakers.csv")).set_index("spk_id")
    male, female = table.index[table["gender"] == "M"], table.index[table["gender"] == "F"]
    assert speakers.loc[male, "f0_median_hz"].between(70, 135).all()
    assert speakers.loc[female, "f0_median_hz"].between(140, 330).all()
    assert speakers["f0_median_hz"].min() < 100 and speakers["f0_median_hz"].max() > 250
    assert (speakers["n_voiced_frames"] > 0).all() and (speakers["n_utts"] == 6).all()
    # dio within a few percent of harvest
    signal = np.concatenate([load_mono(os.path.join(mined["corpus"], "spk24", name))[0]
                             for name in sorted(os.listdir(os.path.join(mined["corpus"], "spk24")))[:2]])
    dio, harvest = np.median(voiced_f0(signal, 8000, "dio")), np.median(voiced_f0(signal, 8000, "harvest"))
    assert abs(dio - harvest) / harvest < 0.04


def test_twins_are_hard_and_cross_gender_pairs_are_not(mined, synth_prepared):
    pairs = mined["pairs"]
    table = pd.read_csv(os.path.join(synth_prepared[0], "speakers.csv"))
    n = len(mined["speakers"])
    assert len(pairs) == n * (n - 1) // 2
    key = pairs.set_index(["spk1", "spk2"])
    twins = table[table["twin"].notna() & (table["spk_id"] < table["twin"])]
    assert len(twins) == 16
    assert all(key.loc[(row.spk_id, row.twin), "is_hard"] for row in twins.itertuples())
    assert not key.loc[("spk00", "spk47"), "is_hard"]  # low male (m1) vs high female (Alicia)
    gender = table.set_index("spk_id")["gender"]
    cross = pairs[pairs["spk1"].map(gender) != pairs["spk2"].map(gender)]
    assert cross["is_hard"].mean() < 0.05
    assert key.loc[("spk01", "spk02"), "hardness"] > 0.95
    sidecar = json.load(open(sidecar_path(mined["output"])))
    assert sidecar["rule"] == "per_anchor" and sidecar["n_pairs"] == len(pairs)
    assert sidecar["n_hard_pairs"] == int(pairs["is_hard"].sum())


def test_per_anchor_rule_is_directional(mined):
    pairs, n = mined["pairs"], len(mined["speakers"])
    k = pair_rules.HardPairRule().partners_per_anchor(n)
    as_anchor = pd.concat([pairs.loc[pairs["hard_for_spk1"], "spk1"], pairs.loc[pairs["hard_for_spk2"], "spk2"]])
    assert (as_anchor.value_counts() == k).all() and as_anchor.nunique() == n  # every speaker has k hard partners
    assert (pairs["is_hard"] == (pairs["hard_for_spk1"] | pairs["hard_for_spk2"])).all()
    assert (pairs["hard_for_spk1"] != pairs["hard_for_spk2"]).any()  # hardness is not symmetric


def test_rule_options_are_checked():
    with pytest.raises(pair_rules.MiningError, match="hard_fraction"):
        pair_rules.HardPairRule(hard_fraction=1.5)
    with pytest.raises(pair_rules.MiningError, match="unknown criterion"):
        pair_rules.HardPairRule("loudness")


def test_threshold_rule(mined):
    speakers = mined["speakers"]
    embeddings = np.eye(len(speakers), dtype=np.float32)
    pairs = pair_rules.pair_table(speakers, embeddings, pair_rules.HardPairRule("pitch", max_pitch_diff_hz=5.0))
    assert (pairs["is_hard"] == (pairs["pitch_diff_hz"] < 5.0)).all()
    assert (pairs["hard_for_spk1"] == pairs["hard_for_spk2"]).all()  # a threshold rule is symmetric
    assert pairs["is_hard"].any() and not pairs["is_hard"].all()


def test_cached_rerun_computes_nothing(mined, caplog):
    paths = pd.read_csv(mined["sources_csv"])["wav"].tolist()
    errors = compute_features(paths, SETTINGS, mined["cache"])
    assert errors == {}
    assert f"{len(paths)} cached, 0 to compute" in caplog.text


def test_shards_then_merge_equal_a_single_run(mined, tmp_path):
    cache, output = str(tmp_path / "cache"), str(tmp_path / "pairs.csv")
    for shard in range(3):
        assert mine_pairs(mined["sources_csv"], output, SETTINGS, cache, num_shards=3, shard_index=shard) is None
    assert not os.path.exists(output)
    mine_pairs(mined["sources_csv"], output, SETTINGS, cache)
    merged = read_pairs(output)
    pd.testing.assert_frame_equal(merged, mined["pairs"], check_exact=False, rtol=1e-5)


def test_unvoiced_and_corrupt_utterances_are_counted_and_skipped(mined, tmp_path, caplog):
    sources = pd.read_csv(mined["sources_csv"]).head(12).copy()  # spk00, spk01
    noise = str(tmp_path / "noise.wav")
    import soundfile as sf

    sf.write(noise, (np.random.default_rng(0).standard_normal(8000) * 0.01).astype(np.float32), 8000)
    corrupt = str(tmp_path / "corrupt.wav")
    open(corrupt, "wb").write(b"not audio at all")
    extra = pd.DataFrame([{"ID": "n", "spk_id": "spk00", "wav": noise}, {"ID": "c", "spk_id": "spk01", "wav": corrupt},
                          {"ID": "z", "spk_id": "ghost", "wav": noise}])
    sources_csv = str(tmp_path / "sources.csv")
    pd.concat([sources, extra]).to_csv(sources_csv, index=False)
    speakers_csv = str(tmp_path / "speakers.csv")
    mine_pairs(sources_csv, str(tmp_path / "pairs.csv"), SETTINGS, mined["cache"], speakers_out=speakers_csv)
    pairs = read_pairs(str(tmp_path / "pairs.csv"))
    speakers = pd.read_csv(speakers_csv).set_index("spk_id")
    assert speakers.loc["spk00", "n_unvoiced_utts"] == 1 and speakers.loc["spk00", "n_utts"] == 7
    assert speakers.loc["spk01", "n_utts"] == 6
    assert "ghost" not in speakers.index and len(pairs) == 1
    assert corrupt in caplog.text and "Speaker ghost has no usable voiced utterance" in caplog.text


def test_bad_sources_csv_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(pair_rules.MiningError, match="empty or malformed"):
        mine_pairs(str(empty), str(tmp_path / "p.csv"), SETTINGS, str(tmp_path / "c"))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(pair_rules.MiningError, match="lacks column"):
        mine_pairs(str(wrong), str(tmp_path / "p.csv"), SETTINGS, str(tmp_path / "c"))


def test_mixture_features_and_correlation(mined, synth_prepared, tmp_path):
    test_csv = os.path.join(synth_prepared[1], "test.csv")
    features_csv = str(tmp_path / "test_features.csv")
    features = mine_mixtures(test_csv, features_csv, SETTINGS, mined["cache"], pairs_csv=mined["output"])
    assert len(features) == 30
    assert {"energy_ratio_db", "hardness", "is_hard", "pitch_diff_semitones"} <= set(features.columns)
    assert features["hardness"].between(0, 1).all() and features["is_hard"].dtype == bool
    # Speaker-level test features land on the training rule's scale: the hard share is of the
    # order of the training rule's (utterance-level features put ~1% there).
    share_training = mined["pairs"]["is_hard"].mean()
    assert 0.3 * share_training < features["is_hard"].mean() < 3 * share_training
    without_rule = mine_mixtures(test_csv, str(tmp_path / "no_rule.csv"), SETTINGS, mined["cache"])
    assert without_rule["is_hard"].isna().all()
    rng = np.random.default_rng(0)
    results = pd.DataFrame({"snt_id": features["ID"].tolist() + ["unknown", "avg"],
                            "si-snr_i": rng.normal(10, 3, len(features) + 2)})
    results_csv = str(tmp_path / "test_results.csv")
    results.to_csv(results_csv, index=False)
    table = run_correlation(results_csv, features_csv, str(tmp_path / "corr.json"), plot=str(tmp_path / "corr.png")).set_index("feature")
    expected = stats.pearsonr(features["pitch_diff_hz"], results["si-snr_i"][: len(features)])
    assert table.loc["pitch_diff_hz", "r"] == pytest.approx(expected.statistic)
    assert table.loc["pitch_diff_hz", "n"] == 30
    saved = json.load(open(tmp_path / "corr.json"))
    assert saved["unmatched"] == {"results": 1, "features": 0}
    assert os.path.getsize(tmp_path / "corr.png") > 10000
    results.assign(snt_id=["x"] * len(results)).to_csv(results_csv, index=False)
    from hardsep_lib.mining.correlation import CorrelationError

    with pytest.raises(CorrelationError, match="no mixture id"):
        run_correlation(results_csv, features_csv, str(tmp_path / "corr.json"))


def test_speechbrain_backend_loads_a_local_model_folder(tmp_path):
    folder = save_speechbrain_encoder(str(tmp_path / "ecapa"), dim=24)
    backend = make_backend(f"speechbrain:{folder}", models_dir=str(tmp_path / "models"))
    signals = [np.random.default_rng(i).standard_normal(16000 + 4000 * i).astype(np.float32) * 0.1 for i in range(3)]
    embeddings = backend.embed(signals)
    assert embeddings.shape == (3, 24) and np.isfinite(embeddings).all()
    import torch

    direct = backend.model.encode_batch(torch.from_numpy(signals[1][None, :])).squeeze().numpy()
    np.testing.assert_allclose(embeddings[1], direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(embeddings[0], embeddings[1])


def test_batched_resemblyzer_equals_its_own_per_utterance_embedding(mined):
    from resemblyzer import preprocess_wav

    backend = make_backend("resemblyzer")
    paths = pd.read_csv(mined["sources_csv"])["wav"].tolist()[:3]
    signals = [resample(load_mono(path)[0], 8000, 16000) for path in paths]
    batched = backend.embed(signals)
    for signal, embedding in zip(signals, batched):
        alone = backend.encoder.embed_utterance(preprocess_wav(signal, source_sr=16000), rate=0.625)
        np.testing.assert_allclose(embedding, alone, atol=1e-5)
