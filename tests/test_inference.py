"""separate.py and the export: SpeechBrain's own SepformerSeparation loads the exported folder
and matches the training Brain; chunked separation stitches without speaker swaps; bad input
is named and skipped."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from hardsep_lib.data.audio import load_mono
from hardsep_lib.inference.export import export_model, is_exported, load_separator
from hardsep_lib.inference.separate import (
    ChunkedSeparator,
    chunk_starts,
    separate_files,
)
from hardsep_lib.training.brain import Separation


def si_snr(estimate, reference):
    estimate, reference = estimate - estimate.mean(), reference - reference.mean()
    projection = (estimate @ reference) / (reference @ reference) * reference
    return 10 * np.log10((projection @ projection) / ((estimate - projection) @ (estimate - projection)))


MODELS = ["sepformer_tiny", "convtasnet_cpu"]


@pytest.fixture(scope="module")
def trained_runs(synth_prepared, tmp_path_factory):
    """get(name): a train.py output folder (one short epoch) of that YAML, trained once."""
    _, save = synth_prepared
    runs = {}

    def get(name):
        if name not in runs:
            output = str(tmp_path_factory.mktemp(name) / "run")
            command = [sys.executable, "train.py", f"hparams/{name}.yaml", "--skip_prep", "True",
                       "--save_folder", save, "--output_folder", output, "--dm_epoch_size", "8", "--batch_size", "4",
                       "--training_signal_len", "4000", "--number_of_epochs", "1", "--data_folder", save]
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr[-3000:]
            runs[name] = output
        return name, runs[name]

    return get


@pytest.fixture(params=MODELS)
def trained_run(request, trained_runs):
    """Each model family (SepFormer and Conv-TasNet)."""
    return trained_runs(request.param)


@pytest.fixture
def tiny_run(trained_runs):
    return trained_runs("sepformer_tiny")


def test_export_loads_with_speechbrain_and_matches_the_brain(trained_run, synth_prepared, tmp_path):
    name, run = trained_run
    folder = export_model(run, str(tmp_path / "pretrained"), "weighted")
    assert is_exported(folder) and "hardsep" not in open(os.path.join(folder, "hyperparams.yaml")).read().split(
        "\n", 2)[2]  # nothing but the header mentions hardsep: colleagues need only SpeechBrain
    card = open(os.path.join(folder, "README.md")).read()
    assert "weighted_train_loss" in card and "selected by: **weighted**" in card and "si-snr_i" in card
    exported = load_separator(folder)
    with open(f"hparams/{name}.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": str(tmp_path / "brain"), "data_folder": str(tmp_path)})
    brain = Separation(modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"},
                       checkpointer=hparams["checkpointer"].__class__(os.path.join(run, "checkpoints"),
                                                                     recoverables=hparams["modules"]))
    brain.checkpointer.recover_if_possible(min_key="weighted_loss")
    brain.modules.eval()
    row = pd.read_csv(os.path.join(synth_prepared[1], "test.csv")).iloc[0]
    item = {"id": "x", **{f"{k}_sig": torch.from_numpy(load_mono(row[f"{k}_wav"])[0]) for k in ("mix", "s1", "s2")}}
    with torch.no_grad():
        expected, _ = brain.compute_forward(sb.dataio.batch.PaddedBatch([item]), sb.Stage.TEST)
        actual = exported.separate_batch(item["mix_sig"][None])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def long_mixture(synth_prepared, seconds=30.0, rate=8000):
    """(mixture, sources (samples, 2)) of two speakers talking over each other for ``seconds``."""
    sources = pd.read_csv(os.path.join(synth_prepared[1], "train_sources.csv"))
    tracks = []
    for speaker in sorted(sources["spk_id"].unique())[:2]:
        paths = sources.loc[sources["spk_id"] == speaker, "wav"].tolist()
        signal = np.concatenate([load_mono(path)[0] for path in paths * 10])[: int(seconds * rate)]
        tracks.append(signal / np.abs(signal).max() * 0.4)
    stacked = np.stack(tracks, axis=1)
    return stacked.sum(axis=1), stacked


class PermutingOracle:
    """Separates perfectly but returns the speakers in the order given per call: a naive
    stitch of its chunks swaps the speakers at every other boundary."""

    def __init__(self, mixture, sources, chunk, hop, orders):
        self.sources, self.orders = sources, orders
        self.spans = iter(chunk_starts(len(mixture), chunk, hop))
        self.chunk, self.calls = chunk, 0

    def __call__(self, mix):
        start = next(self.spans)
        order = self.orders[self.calls % len(self.orders)]
        self.calls += 1
        return torch.from_numpy(self.sources[start:start + mix.shape[1], order].astype(np.float32))[None]


def test_chunks_are_stitched_without_speaker_swaps(synth_prepared, tmp_path):
    mixture, sources = long_mixture(synth_prepared)
    path = str(tmp_path / "long.wav")
    sf.write(path, mixture, 8000)
    chunk, hop = 4 * 8000, 3 * 8000
    outputs = [str(tmp_path / f"s{k}.wav") for k in (1, 2)]
    oracle = PermutingOracle(mixture, sources, chunk, hop, orders=[[0, 1], [1, 0]])
    ChunkedSeparator(oracle, 8000, chunk_seconds=4, overlap=0.25).separate_file(path, outputs)
    assert oracle.calls == len(chunk_starts(len(mixture), chunk, hop)) > 5
    estimates = np.stack([sf.read(output)[0] for output in outputs], axis=1)
    assert estimates.shape == sources.shape
    # every sample, boundaries included, belongs to the same speaker throughout
    np.testing.assert_allclose(estimates, sources, atol=1e-6)


def test_chunked_separation_of_30_seconds_matches_one_pass(trained_run, synth_prepared, tmp_path):
    _, run = trained_run
    model = load_separator(run)
    mixture, sources = long_mixture(synth_prepared)
    path = str(tmp_path / "long.wav")
    sf.write(path, mixture, 8000, subtype="FLOAT")
    results = {}
    for label, seconds in (("one_pass", 0), ("chunked", 4)):
        outputs = [str(tmp_path / f"{label}_s{k}.wav") for k in (1, 2)]
        ChunkedSeparator(model.separate_batch, 8000, chunk_seconds=seconds).separate_file(path, outputs)
        results[label] = np.stack([sf.read(output)[0] for output in outputs], axis=1)
    assert results["chunked"].shape == results["one_pass"].shape == sources.shape
    # the chunked outputs follow the one-pass outputs speaker for speaker (no swap): in each
    # 4-s window, each chunked output is closer to its own one-pass counterpart than to the other
    for start in range(0, len(mixture) - 32000, 32000):
        window = slice(start, start + 32000)
        for k in range(2):
            own = si_snr(results["chunked"][window, k], results["one_pass"][window, k])
            other = si_snr(results["chunked"][window, k], results["one_pass"][window, 1 - k])
            assert own > other


def test_bad_inputs_are_named_and_skipped_and_outputs_are_atomic(tiny_run, tmp_path, caplog):
    _, run = tiny_run
    model = load_separator(run)
    folder = tmp_path / "inputs"
    folder.mkdir()
    good = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    sf.write(folder / "good.wav", np.stack([good, good], axis=1), 16000)  # stereo at 16 kHz
    sf.write(folder / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    nan = good[:8000].copy()
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, 8000, subtype="FLOAT")
    (folder / "corrupt.wav").write_bytes(b"RIFF not audio")
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    report = separate_files(ChunkedSeparator(model.separate_batch, 8000, chunk_seconds=0.5), [str(folder)],
                            str(tmp_path / "out"), 2)
    skipped = {os.path.basename(path): reason for path, reason in report.skipped}
    assert set(skipped) == {"silent.wav", "nan.wav", "corrupt.wav", "empty.wav"}
    assert "silent" in skipped["silent.wav"] and "non-finite" in skipped["nan.wav"]
    assert sorted(os.listdir(tmp_path / "out")) == ["good_s1.wav", "good_s2.wav"]  # no partial or temp file
    info = sf.info(str(tmp_path / "out" / "good_s1.wav"))
    assert info.samplerate == 16000 and info.frames == 16000 and info.channels == 1
    assert "2 channels: mixed down" in caplog.text


def test_separate_cli_on_a_csv(tiny_run, synth_prepared, tmp_path):
    _, run = tiny_run
    csv = str(tmp_path / "three.csv")
    pd.read_csv(os.path.join(synth_prepared[1], "test.csv")).head(3).to_csv(csv, index=False)
    result = subprocess.run([sys.executable, "separate.py", "--model", run, csv, "--output_folder", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([name for name in os.listdir(tmp_path / "out") if name.endswith("_s1.wav")]) == 3
    missing = subprocess.run([sys.executable, "separate.py", "--model", str(tmp_path / "nope"), "x.wav",
                              "--output_folder", str(tmp_path / "o")], capture_output=True, text=True)
    assert missing.returncode == 2 and "separate.py: error: --model" in missing.stderr and "Traceback" not in missing.stderr
