"""Every shipped YAML loads with the keys train.py relies on and separates a batch."""

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from hardsep_lib.training.brain import Separation

REQUIRED_KEYS = ["data_folder", "save_folder", "output_folder", "skip_prep", "number_of_epochs", "seed",
                 "dynamic_mixing", "hard_pairs_csv", "hard_ratio", "weighted_train_loss", "weighted_valid_loss"]


@pytest.mark.parametrize("name", ["sepformer_hard", "convtasnet_hard", "sepformer_tiny"])
def test_yaml_builds_a_working_separator(name, tmp_path):
    with open(f"hparams/{name}.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")})
    assert all(key in hparams for key in REQUIRED_KEYS)
    assert hparams["sample_rate"] == 8000
    brain = Separation(modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"})
    samples = 4000
    mix = sb.dataio.batch.PaddedData(torch.randn(1, samples) * 0.1, torch.ones(1))
    targets = [sb.dataio.batch.PaddedData(torch.randn(1, samples) * 0.1, torch.ones(1)) for _ in range(2)]
    with torch.no_grad():
        estimates, stacked = brain.compute_forward(mix, targets, sb.Stage.VALID)
    assert estimates.shape == stacked.shape == (1, samples, 2)
    assert torch.isfinite(brain.compute_objectives(estimates, stacked)).all()
