"""ablation.py: the table's statistics against numpy on hand-made run folders, intervals that
see seed disagreement, and a killed run that resumes without retraining finished rows."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from hardsep_lib.evaluation.ablation_table import ablation_table, read_runs, write_table

N_MIXTURES = 200


def write_run(folder, row, seed, si_snr_i):
    path = os.path.join(folder, row, f"seed{seed}")
    os.makedirs(path, exist_ok=True)
    ids = [f"mix{i:03d}" for i in range(len(si_snr_i))]
    pd.DataFrame({"snt_id": ids, "si-snr": si_snr_i, "si-snr_i": si_snr_i, "sdr": si_snr_i + 1.0,
                  "sdr_i": si_snr_i + 0.5, "s1_spk": "a", "s2_spk": "b"}).to_csv(
        os.path.join(path, "test_results.csv"), index=False)


@pytest.fixture
def runs(tmp_path):
    """dm: 3 seeds; better: +1 dB on every mixture of every seed; mixed: +2, -2, +0.1 dB by seed."""
    rng = np.random.default_rng(0)
    base = {seed: rng.normal(6.0, 4.0, N_MIXTURES) + seed * 0.2 for seed in (1, 2, 3)}
    for seed, values in base.items():
        write_run(tmp_path, "dm", seed, values)
        write_run(tmp_path, "dm_wtl", seed, values + 1.0)
        write_run(tmp_path, "dm_wvl", seed, values + {1: 2.0, 2: -2.0, 3: 0.1}[seed])
    return str(tmp_path), base


def test_table_statistics_match_numpy(runs):
    folder, base = runs
    table = ablation_table(read_runs(folder, ["dm", "dm_wtl", "dm_wvl"]), "dm", (5.0, 10.0)).set_index("row")
    means = [values.mean() for values in base.values()]
    worst = [np.sort(values)[:20].mean() for values in base.values()]
    hsr5 = [100 * (values < 5).mean() for values in base.values()]
    assert table.loc["dm", "seeds"] == 3
    assert table.loc["dm", "si-snr_i"] == pytest.approx(np.mean(means))
    assert table.loc["dm", "si-snr_i_sd"] == pytest.approx(np.std(means, ddof=1))
    assert table.loc["dm", "sdr_i"] == pytest.approx(np.mean(means) + 0.5)
    assert table.loc["dm", "worst10"] == pytest.approx(np.mean(worst))
    assert table.loc["dm", "worst10_sd"] == pytest.approx(np.std(worst, ddof=1))
    assert table.loc["dm", "HSR5"] == pytest.approx(np.mean(hsr5))
    assert table.loc["dm", "HSR10"] == pytest.approx(np.mean([100 * (v < 10).mean() for v in base.values()]))
    assert table.loc["dm_wtl", "delta_si-snr_i"] == pytest.approx(1.0)
    assert table.loc["dm_wtl", "delta_worst10"] == pytest.approx(1.0)
    shifted = [100 * (values + 1.0 < 5).mean() - h for values, h in zip(base.values(), hsr5)]
    assert table.loc["dm_wtl", "delta_HSR5"] == pytest.approx(np.mean(shifted))
    assert table.loc["dm_wvl", "delta_si-snr_i"] == pytest.approx(0.1 / 3)
    # a constant +1 dB is certain: the interval is [1, 1]; opposite-sign seed effects widen it over 0
    assert table.loc["dm_wtl", "delta_si-snr_i_low"] == pytest.approx(1.0)
    assert table.loc["dm_wtl", "delta_si-snr_i_high"] == pytest.approx(1.0)
    assert table.loc["dm_wvl", "delta_si-snr_i_low"] < 0 < table.loc["dm_wvl", "delta_si-snr_i_high"]
    assert table.loc["dm_wvl", "delta_si-snr_i_high"] - table.loc["dm_wvl", "delta_si-snr_i_low"] > 2.0


def test_one_seed_says_so_and_files_are_written(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 3.0, N_MIXTURES)
    write_run(tmp_path, "dm", 1, values)
    write_run(tmp_path, "dm_wtl", 1, values + rng.normal(0.0, 1.0, N_MIXTURES))
    table = write_table(str(tmp_path), ["dm", "dm_wtl"], "dm", (2.0, 5.0))
    assert np.isnan(table.loc[0, "si-snr_i_sd"]) and "HSR2" in table.columns
    markdown = open(tmp_path / "ablation.md").read()
    assert "**With one seed, the intervals come from the test mixtures alone" in markdown
    assert os.path.getsize(tmp_path / "ablation.png") > 10000
    assert list(pd.read_csv(tmp_path / "ablation.csv")["row"]) == ["dm", "dm_wtl"]


TINY_CONFIG = """\
train_yaml: hparams/sepformer_tiny.yaml
data_folder: {corpus}
prepare:
    corpus: synth
    n_mixtures: [120, 30, 30]
    seed: 7
mining:
    hard_fraction: 0.1
overrides:
    number_of_epochs: 2
    dm_epoch_size: 8
    training_signal_len: 4000
seeds: [1, 2]
rows: [dm, dm_wvl]
reference: dm
hsr: [0.0, 5.0]
"""


def test_killed_run_resumes_without_retraining_finished_rows(synth_prepared, tmp_path):
    corpus, _ = synth_prepared
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(corpus=corpus))
    output = tmp_path / "ablation"
    command = [sys.executable, "ablation.py", "run", str(config), "--output_folder", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (output / "dm" / "seed1" / "test_results.csv").exists():
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # ablation.py and its train.py child
    process.wait()
    assert (output / "dm" / "seed1" / "test_results.csv").exists()
    first_log = (output / "runs" / "dm" / "seed1" / "train_log.txt").read_text()
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (output / "runs" / "dm" / "seed1" / "train_log.txt").read_text().count("epoch:") == first_log.count("epoch:")
    assert "dm seed 1: testing" in resumed.stdout and "dm seed 1: training" not in resumed.stdout
    for row in ("dm", "dm_wvl"):
        for seed in (1, 2):
            assert (output / row / f"seed{seed}" / "test_results.csv").exists()
    table = pd.read_csv(output / "ablation.csv").set_index("row")
    assert table.loc["dm_wvl", "seeds"] == 2 and "HSR0" in table.columns
