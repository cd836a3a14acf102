"""The thin command-line scripts end bad input with one clear message and exit code 2."""

import subprocess
import sys

import pandas as pd


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def test_prepare_data_missing_folder(tmp_path):
    result = run("prepare_data.py", "--corpus", "wsj0-2mix", "--data_folder", str(tmp_path / "nope"),
                 "--save_folder", str(tmp_path / "prep"))
    assert result.returncode == 2
    assert f"wsj0-2mix data folder does not exist: {tmp_path / 'nope'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_mine_hard_subcommands_report_bad_input(tmp_path):
    missing = run("mine_hard.py", "--sources", str(tmp_path / "none.csv"), "--output", str(tmp_path / "p.csv"))
    assert missing.returncode == 2 and "sources CSV not found" in missing.stderr
    results, features = tmp_path / "results.csv", tmp_path / "features.csv"
    pd.DataFrame({"snt_id": ["a"], "si-snr_i": [1.0]}).to_csv(results, index=False)
    pd.DataFrame({"ID": ["b"], "pitch_diff_hz": [1.0], "cos_dist": [0.1], "energy_ratio_db": [0.0]}).to_csv(features, index=False)
    unmatched = run("mine_hard.py", "correlate", "--results", str(results), "--features", str(features))
    assert unmatched.returncode == 2 and "no mixture id of the results CSV matches" in unmatched.stderr
    assert "Traceback" not in unmatched.stderr + missing.stderr


def test_mine_hard_checks_options_before_reading_audio(tmp_path):
    shard = run("mine_hard.py", "--sources", str(tmp_path / "none.csv"), "--output", str(tmp_path / "p.csv"),
                "--num_shards", "4", "--shard_index", "7")
    assert shard.returncode == 2 and "mine_hard.py: error: --shard_index" in shard.stderr
    fraction = run("mine_hard.py", "--sources", str(tmp_path / "none.csv"), "--output", str(tmp_path / "p.csv"),
                   "--hard_fraction", "1.5")
    assert fraction.returncode == 2 and "hard_fraction (P_M) must be in (0, 1]" in fraction.stderr
    assert "Traceback" not in shard.stderr + fraction.stderr


def test_outputs_honour_the_umask(tmp_path):
    import os

    from hardsep_lib.io_utils import write_json

    previous = os.umask(0o022)
    try:
        write_json({"a": 1}, str(tmp_path / "out.json"))
    finally:
        os.umask(previous)
    assert oct(os.stat(tmp_path / "out.json").st_mode & 0o777) == oct(0o644)
