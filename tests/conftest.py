"""Shared fixtures: small audio writers and one synthetic espeak-ng corpus per test session."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from hardsep_lib.prepare import prepare_data


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
