"""WTL and WVL: hand-checked weights, gradient flow, and WVL over 2 gloo ranks."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hardsep_lib.training.weighting import (
    StepLossReduction,
    ValidationScores,
    rank_weights,
    weighted_loss,
)


def test_rank_weights_by_hand():
    assert rank_weights(4).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert rank_weights(1).tolist() == [1.0]


def test_hardest_mixture_gets_the_largest_weight():
    losses = torch.tensor([-20.0, -5.0, -12.0, 3.0])  # -SI-SNR: the mixture at 3.0 is the worst
    # sorted ascending: -20, -12, -5, 3 with weights 0.1, 0.2, 0.3, 0.4
    assert weighted_loss(losses).item() == pytest.approx(-2.0 - 2.4 - 1.5 + 1.2)
    assert weighted_loss(torch.tensor([7.5])).item() == 7.5


def test_gradient_reaches_each_loss_with_its_weight_only():
    losses = torch.tensor([-20.0, -5.0, -12.0, 3.0], requires_grad=True)
    weighted_loss(losses).backward()
    assert losses.grad.tolist() == pytest.approx([0.1, 0.3, 0.2, 0.4])
    params = torch.tensor([1.0, 2.0], requires_grad=True)
    per_mixture = torch.stack([params[0] * 2.0, params[1] * 10.0])  # 2.0 < 20.0
    weighted_loss(per_mixture).backward()
    assert params.grad.tolist() == pytest.approx([2.0 / 3.0 * 1.0, 10.0 * 2.0 / 3.0])


def test_step_reduction_thresholds_and_drops_nonfinite():
    losses = torch.tensor([-35.0, float("nan"), -10.0, float("inf"), -2.0], requires_grad=True)
    weights, n_nonfinite = StepLossReduction(True, threshold=-30.0).weights(losses)
    assert n_nonfinite == 2
    assert weights.tolist() == pytest.approx([0.0, 0.0, 1.0 / 3.0, 0.0, 2.0 / 3.0])
    loss = StepLossReduction(True, threshold=-30.0)(losses)
    assert loss.item() == pytest.approx(-10.0 / 3.0 + -2.0 * 2.0 / 3.0)
    loss.backward()
    assert losses.grad.tolist() == pytest.approx([0.0, 0.0, 1.0 / 3.0, 0.0, 2.0 / 3.0])  # no NaN leaks in
    assert StepLossReduction(False, threshold=-30.0)(losses).item() == pytest.approx(-6.0)
    assert StepLossReduction(False, threshold=-30.0, use_threshold=False)(losses[[0, 2]]).item() == -22.5
    everything_solved = StepLossReduction(True, threshold=-30.0)(torch.tensor([-40.0, -35.0]))
    assert everything_solved.item() == pytest.approx(-40.0 / 3.0 - 35.0 * 2.0 / 3.0)
    assert torch.isnan(StepLossReduction(True)(torch.tensor([float("nan")])))  # left to SpeechBrain's check


VALID_SI_SNR = {f"mix{i:02d}": value for i, value in enumerate([12.0, -1.0, 7.5, 3.0, 15.0, 0.5, 9.0])}


def formula(values):
    """wSI-SNR = sum_k w_k l_(k), l sorted descending, w_k = 2k / (N (N + 1))."""
    ordered = sorted(values, reverse=True)
    n = len(ordered)
    return sum(2 * k / (n * (n + 1)) * value for k, value in enumerate(ordered, start=1))


def test_wvl_equals_the_formula_in_one_process():
    scores = ValidationScores()
    ids = sorted(VALID_SI_SNR)
    scores.add(ids, torch.tensor([VALID_SI_SNR[i] for i in ids]))
    mean, weighted = scores.summary()
    assert mean == pytest.approx(sum(VALID_SI_SNR.values()) / 7)
    assert weighted == pytest.approx(formula(VALID_SI_SNR.values()))


def _wvl_rank(rank, world, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    scores = ValidationScores()
    ids = sorted(VALID_SI_SNR)[rank::world]
    scores.add(ids, torch.tensor([VALID_SI_SNR[i] for i in ids]))
    results[rank] = scores.summary()
    dist.destroy_process_group()


def test_wvl_is_identical_over_two_gloo_ranks():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_wvl_rank, args=(2, port, results), nprocs=2)
    single = ValidationScores()
    single.add(sorted(VALID_SI_SNR), torch.tensor([VALID_SI_SNR[i] for i in sorted(VALID_SI_SNR)]))
    assert results[0] == results[1] == pytest.approx(single.summary())
