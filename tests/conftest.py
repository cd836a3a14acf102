"""Shared fixtures: small audio writers and one synthetic espeak-ng corpus per test session."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from hardsep_lib.data.prepare import prepare_data


def write_speechlike(path, seconds, sample_rate=8000, freq=150.0, seed=0, fmt=None):
    """Writes a voiced-like signal (harmonics of ``freq`` Hz with noise) of ``seconds`` s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    signal = 0.1 * signal + 0.01 * rng.standard_normal(len(t))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, signal.astype(np.float32), sample_rate, format=fmt)
    return path


@pytest.fixture(scope="session")
def synth_prepared(tmp_path_factory):
    """(corpus folder, save folder) of the synth corpus with 120/30/30 mixtures."""
    root = tmp_path_factory.mktemp("synth")
    data_folder, save_folder = str(root / "corpus"), str(root / "prep")
    logging.getLogger().setLevel(logging.INFO)
    prepare_data("synth", data_folder, save_folder, seed=7, n_mixtures=(120, 30, 30))
    return data_folder, save_folder


ECAPA_HPARAMS = """\
# A small randomly initialised ECAPA-TDNN in SpeechBrain's pretrained-folder format.
pretrained_path: {folder}
n_mels: 40
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    lin_neurons: {dim}
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def save_speechbrain_encoder(folder, dim=24):
    """Saves a tiny ECAPA-TDNN EncoderClassifier folder (hyperparams.yaml + checkpoint)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    os.makedirs(folder, exist_ok=True)
    text = ECAPA_HPARAMS.format(folder=folder, dim=dim)
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as handle:
        handle.write(text)
    torch.manual_seed(0)
    hparams = load_hyperpyyaml(text)
    torch.save(hparams["embedding_model"].state_dict(), os.path.join(folder, "embedding_model.ckpt"))
    return folder
