"""train.py end to end: the tiny SepFormer with DM + hard re-sampling + WTL + WVL on a generated
corpus, killed after its first checkpoint, resumed, tested, and re-tested with --test_only."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from hardsep_lib.mining.features import FeatureSettings
from hardsep_lib.mining.jobs import mine_pairs


def train_command(save, output, *extra, batch_size=4, yaml="hparams/sepformer_tiny.yaml"):
    return [sys.executable, "train.py", yaml, "--skip_prep", "True", "--save_folder", save,
            "--output_folder", output, "--dm_epoch_size", "8", "--batch_size", str(batch_size),
            "--training_signal_len", "4000", *extra]


@pytest.fixture(scope="module")
def pairs(synth_prepared, tmp_path_factory):
    _, save = synth_prepared
    output = str(tmp_path_factory.mktemp("pairs") / "pairs.csv")
    mine_pairs(os.path.join(save, "train_sources.csv"), output, FeatureSettings(), os.path.join(save, "cache"))
    return output


def epochs_logged(output):
    with open(os.path.join(output, "train_log.txt")) as handle:
        return [int(line.split(",")[0].split(":")[1]) for line in handle if line.startswith("epoch:")]


def test_train_kill_resume_test(synth_prepared, pairs, tmp_path):
    _, save = synth_prepared
    output = str(tmp_path / "run")
    switches = ["--hard_pairs_csv", pairs, "--hard_ratio", "0.5", "--dynamic_mixing", "True",
                "--weighted_train_loss", "True", "--weighted_valid_loss", "True"]
    process = subprocess.Popen(train_command(save, output, "--number_of_epochs", "50", *switches),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = os.path.join(output, "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.isdir(checkpoints) and any(
            name.startswith("CKPT") for name in os.listdir(checkpoints))):
        time.sleep(0.5)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = epochs_logged(output)
    assert done and done == list(range(1, len(done) + 1))

    result = subprocess.run(train_command(save, output, "--number_of_epochs", str(len(done) + 2), *switches),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_logged(output) == list(range(1, len(done) + 3))  # resumed, no epoch repeated
    log = open(os.path.join(output, "train_log.txt")).read()
    assert "train hard_draw_fraction" in log and "hard_pair_fraction" in log and "valid weighted_si-snr" in log

    results = pd.read_csv(os.path.join(output, "test_results.csv"))
    assert list(results.columns) == ["snt_id", "si-snr", "si-snr_i", "sdr", "sdr_i", "s1_spk", "s2_spk"]
    test = pd.read_csv(os.path.join(save, "test.csv"))
    assert sorted(results["snt_id"]) == sorted(test["ID"])
    summary = json.load(open(os.path.join(output, "test_summary.json")))
    assert summary[0]["subset"] == "all" and summary[0]["n"] == len(test)
    assert summary[0]["HSR10"] == pytest.approx(100.0 * (results["si-snr_i"] < 10).mean())

    reference = str(tmp_path / "reference.csv")
    results.to_csv(reference, index=False)
    retest = subprocess.run(train_command(save, output, "--test_only", "--reference_results_csv", reference),
                            capture_output=True, text=True)
    assert retest.returncode == 0, retest.stderr[-3000:]
    assert epochs_logged(output) == list(range(1, len(done) + 3))
    subsets = {row["subset"]: row for row in json.load(open(os.path.join(output, "test_summary.json")))}
    assert subsets["reference worst 10%"]["n"] == 3
    assert subsets["reference worst 10%"]["si-snr_i"] <= subsets["all"]["si-snr_i"]
    retested = pd.read_csv(os.path.join(output, "test_results.csv"))
    pd.testing.assert_frame_equal(retested, results, rtol=1e-4)


def test_debug_smoke_run_and_bad_pair_csv(synth_prepared, tmp_path):
    _, save = synth_prepared
    debug = subprocess.run(train_command(save, str(tmp_path / "debug"), "--debug"), capture_output=True, text=True)
    assert debug.returncode == 0, debug.stderr[-3000:]
    assert os.path.isfile(tmp_path / "debug" / "test_results.csv")
    no_hard = tmp_path / "pairs.csv"
    pd.DataFrame({"spk1": ["spk00"], "spk2": ["spk01"], "is_hard": [False]}).to_csv(no_hard, index=False)
    bad = subprocess.run(train_command(save, str(tmp_path / "bad"), "--hard_pairs_csv", str(no_hard)),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "has no hard pair among the training speakers" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_ddp_with_two_gloo_processes_matches_one_process(synth_prepared, pairs, tmp_path):
    import socket

    _, save = synth_prepared
    output = str(tmp_path / "ddp")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = train_command(save, output, "--number_of_epochs", "1", "--hard_pairs_csv", pairs,
                            "--distributed_backend", "gloo")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", port, *command[1:]], capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert epochs_logged(output) == [1]
    two_processes = pd.read_csv(os.path.join(output, "test_results.csv"))
    single = subprocess.run(train_command(save, output, "--number_of_epochs", "1", "--test_only"),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    one_process = pd.read_csv(os.path.join(output, "test_results.csv"))
    assert len(two_processes) == 30 and two_processes["snt_id"].is_unique
    exact = ["snt_id", "si-snr", "si-snr_i", "s1_spk", "s2_spk"]
    pd.testing.assert_frame_equal(two_processes[exact], one_process[exact], rtol=1e-4, atol=1e-4)
    # SDR's distortion filter is solved by 10 conjugate-gradient iterations, whose rounding
    # depends on the BLAS thread count: equal to within 0.1 dB on this untrained (ill-conditioned) model.
    assert (two_processes["sdr"] - one_process["sdr"]).abs().max() < 0.1


def module_parameters(folder):
    """{module.parameter: tensor} of the encoder, masknet and decoder checkpoints in ``folder``."""
    import torch

    parameters = {}
    for module in ("encoder", "masknet", "decoder"):
        state = torch.load(os.path.join(folder, f"{module}.ckpt"), map_location="cpu")
        parameters.update({f"{module}.{key}": value for key, value in state.items()})
    return parameters


def newest_checkpoint(output):
    folder = os.path.join(output, "checkpoints")
    return os.path.join(folder, sorted(name for name in os.listdir(folder) if name.startswith("CKPT"))[-1])


def initial_parameters(yaml, tmp_path):
    """The seeded initialisation every run of ``yaml`` starts from."""
    from hyperpyyaml import load_hyperpyyaml

    with open(yaml) as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": str(tmp_path / "init")})
    return {f"{name}.{key}": value.detach().clone() for name in ("encoder", "masknet", "decoder")
            for key, value in hparams["modules"][name].state_dict().items()}


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.mark.parametrize("weighted", ["True", "False"])
def test_one_step_is_the_same_batched_accumulated_or_distributed(synth_prepared, tmp_path, weighted):
    """Two optimiser steps of 4 mixtures each: one batch of 4, 2 accumulated micro-batches of
    2, and 2 gloo processes x 2 give the same parameter updates (to 1e-5 of each tensor's
    update norm). Plain SGD: the update is the step's gradient itself. (Adam turns the float
    noise of a gradient that is zero by construction, e.g. attention's key bias, into
    eps-sized updates, which would test Adam's eps rather than the gradient.)"""
    _, save = synth_prepared
    yaml = str(tmp_path / "tiny_sgd.yaml")
    with open("hparams/sepformer_tiny.yaml") as source, open(yaml, "w") as target:
        target.write(source.read().replace("!name:torch.optim.Adam", "!name:torch.optim.SGD"))
    common = ["--number_of_epochs", "1", "--weighted_train_loss", weighted, "--distributed_backend", "gloo", "--lr", "0.01"]
    runs = {"batch4": (4, []), "accumulate2x2": (2, ["--grad_accumulation_factor", "2"]), "ddp2x2": (2, [])}
    for name, (batch_size, options) in runs.items():
        command = train_command(save, str(tmp_path / name), *common, *options, batch_size=batch_size, yaml=yaml)
        if name == "ddp2x2":
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                       "--master_port", free_port(), *command[1:]]
        # one thread per process everywhere (torchrun's default): the thread count changes the
        # float summation order of the convolutions, hence the last digits of the gradients
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, (name, result.stderr[-3000:])
    initial = initial_parameters(yaml, tmp_path)
    reference = {key: value - initial[key] for key, value in module_parameters(newest_checkpoint(str(tmp_path / "batch4"))).items()}
    assert sum(update.norm() for update in reference.values()) > 0
    for name in ("accumulate2x2", "ddp2x2"):
        other = module_parameters(newest_checkpoint(str(tmp_path / name)))
        for key, update in reference.items():
            difference = (other[key] - initial[key] - update).norm()
            parameters = (initial[key] + update).norm()
            assert difference <= 1e-5 * parameters, (name, key)  # the parameters, to 1e-5 relative
            # stricter: the updates (the steps' gradients) to 1e-5 of their norm, plus the
            # float32 rounding of the stored parameters (2 ulp)
            assert difference <= 1e-5 * update.norm() + 2 ** -22 * parameters, (
                name, key, float(difference), float(update.norm()))


def test_wvl_selects_only_and_each_selection_tests_its_own_best(synth_prepared, tmp_path):
    _, save = synth_prepared
    logs = {}
    for wvl in ("True", "False"):
        output = str(tmp_path / f"wvl{wvl}")
        result = subprocess.run(train_command(save, output, "--number_of_epochs", "4", "--weighted_valid_loss", wvl),
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        logs[wvl] = [line for line in open(os.path.join(output, "train_log.txt")) if line.startswith("epoch:")]
    assert len(logs["True"]) == 4 and logs["True"] == logs["False"]  # same LR schedule, same training
    epochs = pd.DataFrame([dict(item.split(": ") for item in line.strip().replace(" - ", ", ").split(", ")
                                if ": " in item) for line in logs["True"]]).astype(float)
    output = str(tmp_path / "wvlTrue")
    for selection, column in (("plain", "valid si-snr"), ("weighted", "valid weighted_si-snr")):
        folder = str(tmp_path / f"test_{selection}")
        result = subprocess.run(train_command(save, output, "--number_of_epochs", "4", "--test_only",
                                              "--test_selection", selection, "--test_folder", folder),
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        last = open(os.path.join(output, "train_log.txt")).read().strip().splitlines()[-1]
        best_epoch = int(epochs.loc[epochs[column].idxmax(), "epoch"])
        assert f"Epoch loaded: {best_epoch}" in last and f"selection: {selection}" in last
        assert os.path.isfile(os.path.join(folder, "test_results.csv"))
