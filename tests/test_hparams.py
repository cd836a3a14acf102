"""Every shipped YAML loads with the keys train.py relies on, separates a batch, and asks for a
WTL that really weights: at its own step size the WTL gradient is not the plain mean's."""

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from hardsep_lib.training.brain import Separation
from hardsep_lib.training.options import check_training_options, mixtures_per_step

REQUIRED_KEYS = ["data_folder", "save_folder", "output_folder", "skip_prep", "number_of_epochs", "seed",
                 "dynamic_mixing", "hard_pairs_csv", "hard_ratio", "weighted_train_loss", "weighted_valid_loss",
                 "test_selection", "train_loss_reduction", "grad_accumulation_factor"]
SHIPPED = ["sepformer_hard", "convtasnet_hard", "sepformer_tiny"]


def load(name, tmp_path, **overrides):
    with open(f"hparams/{name}.yaml") as handle:
        return load_hyperpyyaml(handle, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"),
                                         **overrides})


def random_batch(samples, size=1):
    items = [{"id": f"m{i}", **{key: torch.randn(samples) * 0.1 for key in ("mix_sig", "s1_sig", "s2_sig")}}
             for i in range(size)]
    return sb.dataio.batch.PaddedBatch(items)


@pytest.mark.parametrize("name", SHIPPED)
def test_yaml_builds_a_working_separator(name, tmp_path):
    hparams = load(name, tmp_path)
    assert all(key in hparams for key in REQUIRED_KEYS)
    assert hparams["sample_rate"] == 8000
    check_training_options(hparams, {})
    brain = Separation(modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"})
    with torch.no_grad():
        estimates, targets = brain.compute_forward(random_batch(4000), sb.Stage.VALID)
    assert estimates.shape == targets.shape == (1, 4000, 2)
    assert torch.isfinite(brain.mixture_losses((estimates, targets))).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_wtl_is_not_a_no_op_at_the_shipped_step_size(name, tmp_path):
    hparams = load(name, tmp_path)
    step = mixtures_per_step(hparams, {})
    assert hparams["weighted_train_loss"] and step >= 4
    params = torch.linspace(1.0, 2.0, step, requires_grad=True)
    losses = -10.0 * params  # distinct per-mixture losses (-SI-SNR, dB: 10 to 20 dB)
    gradients = {}
    for weighted in (True, False):
        params.grad = None
        reduction = load(name, tmp_path, weighted_train_loss=weighted)["train_loss_reduction"]
        reduction(losses).backward(retain_graph=True)
        gradients[weighted] = params.grad.clone()
    assert not torch.allclose(gradients[True], gradients[False])
    # WTL: the hardest mixture (largest loss: params[0]) moves the most; plain: all alike
    assert (gradients[True].abs().diff() < 0).all()
    assert torch.allclose(gradients[False], torch.full((step,), -10.0 / step))


def test_wtl_with_too_few_mixtures_per_step_is_refused(tmp_path):
    from hardsep_lib.errors import OptionError

    hparams = load("sepformer_hard", tmp_path, grad_accumulation_factor=1)
    with pytest.raises(OptionError, match="--batch_size or --grad_accumulation_factor"):
        check_training_options(hparams, {})
    check_training_options(hparams, {"grad_accumulation_factor": 4})  # the command line counts too
    with pytest.raises(OptionError, match="weighted_train_loss must be True or False"):
        check_training_options(load("sepformer_tiny", tmp_path, weighted_train_loss="off"), {})
    with pytest.raises(OptionError, match="hard_ratio"):
        check_training_options(load("sepformer_tiny", tmp_path, hard_ratio=1.5), {})
