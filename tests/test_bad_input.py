"""Bad input never trains or reports silently wrong: one case per mistake, each asserting the
exit code (2, one line, no traceback) or the named skip, and that nothing is lost or stale."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import write_speechlike
from test_prepare import build_wsj0_2mix, build_wsj0_si_tr_s

from hardsep_lib.data.prepare import prepare_data


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def assert_clean_error(result, script, *words):
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{script}: error:" in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr[-1000:])


# ------------------------------------------------------------------ preparation: named skips
def _corrupt_one(data_folder, kind):
    """Spoils one file of the WSJ0-2mix tree in the way ``kind`` says; returns its path."""
    path = os.path.join(data_folder, "tr", "mix", "01ba0102_1.2_20aa0101_-1.2.wav")
    signal, rate = sf.read(path, dtype="float32")
    if kind == "nan":
        signal[1000] = np.nan
        sf.write(path, signal, rate, subtype="FLOAT")
    elif kind == "inf":
        signal[50] = np.inf
        sf.write(path, signal, rate, subtype="FLOAT")
    elif kind == "truncated":
        sf.write(path, signal[: len(signal) // 2], rate)
    elif kind == "ten_samples":
        for sub in ("mix", "s1", "s2"):
            sf.write(path.replace("/mix/", f"/{sub}/"), signal[:10], rate)
    return path


@pytest.mark.parametrize("kind, reason", [("nan", "non-finite sample"), ("inf", "non-finite sample"),
                                          ("truncated", "differ in length"), ("ten_samples", "too short")])
def test_prepare_skips_and_names_bad_files(tmp_path, caplog, kind, reason):
    data_folder = build_wsj0_2mix(str(tmp_path))
    bad = _corrupt_one(data_folder, kind)
    save = str(tmp_path / "prep")
    prepare_data("wsj0-2mix", data_folder, save, dm_folder=build_wsj0_si_tr_s(str(tmp_path)))
    train = pd.read_csv(os.path.join(save, "train.csv"))
    assert len(train) == 1 and "01ba0102" not in " ".join(train["ID"])
    assert reason in caplog.text and os.path.basename(bad) in caplog.text


def test_dm_folder_one_level_too_high_is_an_error(tmp_path):
    data_folder = build_wsj0_2mix(str(tmp_path))
    build_wsj0_si_tr_s(str(tmp_path))
    os.makedirs(tmp_path / "si_dt_05" / "050")
    write_speechlike(str(tmp_path / "si_dt_05" / "050" / "050a0101.wav"), 1.0)
    result = run("prepare_data.py", "--corpus", "wsj0-2mix", "--data_folder", data_folder,
                 "--dm_folder", str(tmp_path), "--save_folder", str(tmp_path / "prep"))
    assert_clean_error(result, "prepare_data.py", "si_dt_05", "si_tr_s", "corpus split folders")
    assert not os.path.exists(tmp_path / "prep" / "train_sources.csv")


def test_a_test_speaker_in_the_dm_sources_is_an_error(tmp_path):
    data_folder = build_wsj0_2mix(str(tmp_path))
    dm = build_wsj0_si_tr_s(str(tmp_path))
    write_speechlike(os.path.join(dm, "050", "050c0101.wav"), 1.0)  # 050 speaks in the test set
    result = run("prepare_data.py", "--corpus", "wsj0-2mix", "--data_folder", data_folder, "--dm_folder", dm,
                 "--save_folder", str(tmp_path / "prep"))
    assert_clean_error(result, "prepare_data.py", "test speaker(s) also appear in the training data", "050")


# ------------------------------------------------------------------ train.py: options before work
TRAIN = ["train.py", "hparams/sepformer_tiny.yaml", "--skip_prep", "True", "--training_signal_len", "4000"]
SMALL = ["--dm_epoch_size", "8"]


@pytest.mark.parametrize("options, words", [
    (["--hard_ratio", "1.5"], ["--hard_ratio (P_S) must be a number in [0, 1]"]),
    (["--hard_ratio", "-0.2"], ["--hard_ratio"]),
    (["--weighted_train_loss", "off"], ["--weighted_train_loss must be True or False", "'off'"]),
    (["--dm_epoch_size", "0"], ["--dm_epoch_size must be an integer >= 1"]),
    (["--batch_size", "2"], ["needs >= 4", "--grad_accumulation_factor"]),
    (["--test_selection", "best"], ["--test_selection must be plain or weighted"]),
    (["--hard_pairs_csv", "/nonexistent/pairs.csv"], ["/nonexistent/pairs.csv does not exist"]),
])
def test_train_options_are_checked_before_any_work(tmp_path, options, words):
    result = run(*TRAIN, "--save_folder", str(tmp_path / "prep"), "--output_folder", str(tmp_path / "out"), *options)
    assert_clean_error(result, "train.py", *words)
    assert not os.path.exists(tmp_path / "out" / "train_log.txt")


def test_test_only_without_a_checkpoint_is_an_error(synth_prepared, tmp_path):
    _, save = synth_prepared
    result = run(*TRAIN, *SMALL, "--save_folder", save, "--output_folder", str(tmp_path / "untrained"), "--test_only")
    assert_clean_error(result, "train.py", "no checkpoint", str(tmp_path / "untrained"))
    assert not os.path.exists(tmp_path / "untrained" / "test_results.csv")


def test_a_truncated_latest_checkpoint_resumes_from_the_newest_intact_one(synth_prepared, tmp_path):
    _, save = synth_prepared
    output = str(tmp_path / "run")
    first = run(*TRAIN, *SMALL, "--save_folder", save, "--output_folder", output, "--number_of_epochs", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoints = os.path.join(output, "checkpoints")
    intact = sorted(os.listdir(checkpoints))[-1]  # epoch 1
    second = run(*TRAIN, *SMALL, "--save_folder", save, "--output_folder", output, "--number_of_epochs", "2")
    assert second.returncode == 0, second.stderr[-2000:]
    latest = sorted(name for name in os.listdir(checkpoints) if name != intact)[-1]
    masknet = os.path.join(checkpoints, latest, "masknet.ckpt")
    with open(masknet, "r+b") as handle:  # a kill or a full disk during saving
        handle.truncate(os.path.getsize(masknet) // 3)
    intact_left = [name for name in os.listdir(checkpoints) if name.startswith("CKPT+") and name != latest]
    third = run(*TRAIN, *SMALL, "--save_folder", save, "--output_folder", output, "--number_of_epochs", "2")
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"{latest} is unreadable" in third.stdout + third.stderr
    assert os.path.isdir(os.path.join(checkpoints, "CORRUPT+" + latest[len("CKPT+"):]))  # kept for inspection
    epochs = [line.split(",")[0] for line in open(os.path.join(output, "train_log.txt")) if line.startswith("epoch:")]
    # resumed after the newest intact checkpoint (epoch 1 if SpeechBrain kept it, else from scratch)
    redone = ["epoch: 2"] if intact_left else ["epoch: 1", "epoch: 2"]
    assert epochs == ["epoch: 1", "epoch: 2", *redone]


# ------------------------------------------------------------------ mining and correlation
def test_correlate_with_infinite_values_is_an_error_and_leaves_no_stale_output(tmp_path):
    results, features, output = tmp_path / "results.csv", tmp_path / "features.csv", tmp_path / "corr.json"
    pd.DataFrame({"snt_id": ["a", "b", "c"], "si-snr_i": [1.0, 2.0, 3.0]}).to_csv(results, index=False)
    pd.DataFrame({"ID": ["a", "b", "c"], "pitch_diff_hz": [1.0, np.inf, 3.0], "cos_dist": [0.1, 0.2, 0.3],
                  "energy_ratio_db": [0.0, 1.0, 2.0]}).to_csv(features, index=False)
    output.write_text(json.dumps({"old": True}))
    result = run("mine_hard.py", "correlate", "--results", str(results), "--features", str(features),
                 "--output", str(output))
    assert_clean_error(result, "mine_hard.py", "pitch_diff_hz are infinite")
    assert not output.exists()


def test_corrupt_cache_entry_is_recomputed_and_duplicate_sources_counted_once(synth_prepared, tmp_path, caplog):
    from hardsep_lib.mining.features import FeatureCache, FeatureSettings
    from hardsep_lib.mining.jobs import mine_pairs, read_pairs

    _, save = synth_prepared
    sources = pd.read_csv(os.path.join(save, "train_sources.csv")).head(12)
    sources_csv = str(tmp_path / "sources.csv")
    pd.concat([sources, sources.head(3)]).to_csv(sources_csv, index=False)  # 3 duplicate rows
    cache, settings = str(tmp_path / "cache"), FeatureSettings()
    speakers_csv = str(tmp_path / "speakers.csv")
    mine_pairs(sources_csv, str(tmp_path / "pairs.csv"), settings, cache, speakers_out=speakers_csv)
    first = read_pairs(str(tmp_path / "pairs.csv"))
    assert "3 duplicate row(s)" in caplog.text
    assert pd.read_csv(speakers_csv)["n_utts"].sum() == 12
    f0_path, _ = FeatureCache(cache, settings).paths(sources["wav"].iloc[0])
    with open(f0_path, "wb") as handle:
        handle.write(b"\x93NUMPY garbage")
    mine_pairs(sources_csv, str(tmp_path / "pairs.csv"), settings, cache)
    again = read_pairs(str(tmp_path / "pairs.csv"))
    assert "Corrupt feature cache entry" in caplog.text
    pd.testing.assert_frame_equal(again, first)


def test_synth_refuses_a_folder_holding_another_corpus(tmp_path):
    other = tmp_path / "other"
    write_speechlike(str(other / "spkA" / "a.wav"), 1.0)
    result = run("prepare_data.py", "--corpus", "synth", "--data_folder", str(other), "--save_folder", str(tmp_path / "p"))
    assert_clean_error(result, "prepare_data.py", "holds no synthetic corpus")
    assert sorted(os.listdir(other)) == ["spkA"]  # nothing overwritten


def test_a_changed_input_is_prepared_again_and_bad_counts_are_refused(tmp_path):
    data_folder = build_wsj0_2mix(str(tmp_path))
    save = str(tmp_path / "prep")
    prepare_data("wsj0-2mix", data_folder, save)
    assert len(pd.read_csv(os.path.join(save, "train.csv"))) == 2
    for sub in ("mix", "s1", "s2"):  # a mixture removed after preparation
        os.remove(os.path.join(data_folder, "tr", sub, "01ba0102_1.2_20aa0101_-1.2.wav"))
    prepare_data("wsj0-2mix", data_folder, save)
    assert len(pd.read_csv(os.path.join(save, "train.csv"))) == 1  # not skipped as "already prepared"
    result = run("prepare_data.py", "--corpus", "synth", "--data_folder", str(tmp_path / "s"), "--save_folder",
                 str(tmp_path / "p"), "--n_mixtures", "0", "10", "10")
    assert_clean_error(result, "prepare_data.py", "--n_mixtures needs three counts >= 1")


def test_an_infinite_sample_is_skipped_by_mining_not_a_crash(synth_prepared, tmp_path, caplog):
    from hardsep_lib.mining.features import FeatureSettings
    from hardsep_lib.mining.jobs import mine_pairs, read_pairs

    _, save = synth_prepared
    sources = pd.read_csv(os.path.join(save, "train_sources.csv")).head(12)
    bad = str(tmp_path / "inf.wav")
    signal = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    signal[10] = np.inf
    sf.write(bad, signal, 8000, subtype="FLOAT")
    extra = pd.DataFrame([{"ID": "bad", "spk_id": sources["spk_id"].iloc[0], "wav": bad}])
    sources_csv = str(tmp_path / "sources.csv")
    pd.concat([sources, extra]).to_csv(sources_csv, index=False)
    mine_pairs(sources_csv, str(tmp_path / "pairs.csv"), FeatureSettings(), str(tmp_path / "cache"))
    pairs = read_pairs(str(tmp_path / "pairs.csv"))
    assert len(pairs) == 1 and bad in caplog.text and "non-finite" in caplog.text


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    from hardsep_lib.io_utils import write_csv

    path = str(tmp_path / "table.csv")
    write_csv(pd.DataFrame({"a": [1, 2]}), path)

    def dies_halfway(self, target, **kwargs):
        with open(target, "w") as handle:
            handle.write("a\n1\n")  # part of the rows, then the process is "killed"
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        write_csv(pd.DataFrame({"a": [3, 4, 5]}), path)
    monkeypatch.undo()
    assert pd.read_csv(path)["a"].tolist() == [1, 2] and os.listdir(tmp_path) == ["table.csv"]


def test_summary_tables_with_wrong_columns_leave_no_stale_summary(tmp_path, caplog):
    from types import SimpleNamespace

    from hardsep_lib.training.brain import write_test_outputs

    results = pd.DataFrame({"snt_id": ["m1", "m2"], "si-snr": [1.0, 2.0], "si-snr_i": [3.0, 12.0], "sdr": [1.0, 2.0],
                            "sdr_i": [1.0, 2.0], "s1_spk": ["a", "b"], "s2_spk": ["c", "d"]})
    features, reference = tmp_path / "features.csv", tmp_path / "reference.csv"
    pd.DataFrame({"ID": ["m1"], "hardness": [0.9]}).to_csv(features, index=False)  # no is_hard
    pd.DataFrame({"id": ["m1"], "score": [1.0]}).to_csv(reference, index=False)  # no snt_id / si-snr_i
    (tmp_path / "test_summary.json").write_text('[{"subset": "all", "n": 999}]')  # an older run's
    hparams = SimpleNamespace(output_folder=str(tmp_path), test_folder=str(tmp_path), test_features_csv=str(features),
                              reference_results_csv=str(reference))
    write_test_outputs(results, hparams)
    summary = json.loads((tmp_path / "test_summary.json").read_text())
    assert [row["subset"] for row in summary] == ["all"] and summary[0]["n"] == 2
    assert "lacks is_hard" in caplog.text and "lacks snt_id, si-snr_i" in caplog.text
