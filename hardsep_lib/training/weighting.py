"""Local hard mining (method.md): rank-weighted SI-SNR for training (WTL) and validation (WVL).

Sorted best first, the mixture at position k = 1..B weighs w_k = 2k / (B (B + 1)): the worst
mixture weighs most and the weights sum to 1. The weights are constants; gradients reach
each mixture's loss only through its own SI-SNR.
"""

import torch

from hardsep_lib.training.ddp import gather_objects


def rank_weights(count, device=None, dtype=torch.float32):
    """w_k = 2k / (B (B + 1)) for k = 1..B (B = ``count``), a (B,) tensor summing to 1."""
    positions = torch.arange(1, count + 1, device=device, dtype=dtype)
    return 2.0 * positions / (count * (count + 1))


def weighted_loss(losses):
    """Rank-weighted mean of per-mixture losses (B,) = -SI-SNR in dB; 0-dim tensor.

    Sorting the losses ascending puts the best mixture first, so the largest weight falls on
    the largest loss (the hardest mixture). B = 1 gives the plain loss.
    """
    ordered, _ = torch.sort(losses)
    return (rank_weights(len(losses), losses.device, losses.dtype) * ordered).sum()


def training_loss(losses, threshold=None, weighted=True):
    """The loss to back-propagate from per-mixture losses (B,) (-SI-SNR, dB).

    Non-finite losses are dropped first; then, as SpeechBrain's separation recipes do, losses
    at or below ``threshold`` (mixtures already separated beyond -threshold dB) are dropped
    unless that would drop them all. Returns (loss or None when nothing finite remains,
    number of non-finite mixtures dropped).
    """
    finite = torch.isfinite(losses)
    n_nonfinite = int((~finite).sum())
    kept = losses[finite]
    if kept.numel() == 0:
        return None, n_nonfinite
    if threshold is not None and (kept > threshold).any():
        kept = kept[kept > threshold]
    return (weighted_loss(kept) if weighted else kept.mean()), n_nonfinite


class ValidationScores:
    """Collects every validation mixture's SI-SNR (dB) for the stage-end plain and weighted
    scores, gathered over DDP ranks so that 1 and N processes give the same numbers."""

    def __init__(self):
        self.scores = {}

    def add(self, ids, si_snr):
        """Stores the SI-SNR (B,) of the mixtures ``ids``."""
        for mixture_id, value in zip(ids, si_snr.detach().cpu().tolist()):
            self.scores[mixture_id] = value

    def gathered(self):
        """{mixture id: SI-SNR} of all ranks (ids seen twice, e.g. by sampler padding, once)."""
        merged = {}
        for part in gather_objects(self.scores):
            merged.update(part)
        return merged

    def summary(self):
        """(mean SI-SNR, weighted SI-SNR) in dB over the whole gathered validation set."""
        values = torch.tensor([value for _, value in sorted(self.gathered().items())], dtype=torch.float64)
        return float(values.mean()), float(-weighted_loss(-values))
