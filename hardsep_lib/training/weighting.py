"""Local hard mining (docs/method.md): rank-weighted SI-SNR for training (WTL) and validation (WVL).

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


class StepLossReduction:
    """Reduces the per-mixture losses of one optimiser step to the loss to back-propagate.

    Like Asteroid's ``PITLossWrapper`` reductions, a loss *object* for the YAML: the per-
    mixture PIT loss (-SI-SNR, dB) is computed elsewhere; this object says how the mixtures
    of a step are combined. Non-finite losses are dropped first; then, as SpeechBrain's
    separation recipes do, mixtures at or below ``threshold`` (already separated beyond
    -threshold dB) are dropped unless that would drop them all. The kept mixtures get the
    rank weights w_k = 2k / (B (B + 1)) (``weighted``, WTL) or 1 / B (plain mean).

    Parameters
    ----------
    weighted : bool
        WTL on or off.
    threshold : float, optional
        Loss (dB of -SI-SNR) at or below which a mixture counts as solved (e.g. -30).
    use_threshold : bool
        SpeechBrain's ``threshold_byloss``.

    Example
    -------
    >>> reduction = StepLossReduction(weighted=True)
    >>> weights, n_nonfinite = reduction.weights(torch.tensor([-20.0, 3.0, -5.0, float("nan")]))
    >>> [round(w, 3) for w in weights.tolist()], n_nonfinite
    ([0.167, 0.5, 0.333, 0.0], 1)
    >>> round(reduction(torch.tensor([-20.0, 3.0, -5.0])).item(), 3)
    -3.5
    """

    def __init__(self, weighted=True, threshold=None, use_threshold=True):
        self.weighted = weighted
        self.threshold = threshold if use_threshold else None

    def weights(self, losses):
        """Constant weights (N,) of per-mixture losses (N,), zero for dropped mixtures, summing
        to 1 over the kept ones (all zero when none is finite); and the number of non-finite
        losses."""
        losses = losses.detach()
        kept = torch.isfinite(losses)
        n_nonfinite = int((~kept).sum())
        if self.threshold is not None and (losses[kept] > self.threshold).any():
            kept &= losses > self.threshold
        weights = torch.zeros_like(losses)
        count = int(kept.sum())
        if count == 0:
            return weights, n_nonfinite
        if self.weighted:
            # ascending loss = best first: the largest weight falls on the hardest mixture
            order = torch.argsort(losses[kept], stable=True)
            kept_weights = torch.empty(count, dtype=losses.dtype, device=losses.device)
            kept_weights[order] = rank_weights(count, losses.device, losses.dtype)
            weights[kept] = kept_weights
        else:
            weights[kept] = 1.0 / count
        return weights, n_nonfinite

    def __call__(self, losses):
        """The reduced loss of per-mixture losses (N,): a 0-dim tensor with gradients."""
        return apply_weights(losses, self.weights(losses)[0])


def apply_weights(losses, weights):
    """sum_i w_i l_i over the mixtures with a weight (dropped, possibly non-finite losses
    contribute neither value nor gradient). With no weight at all, the plain mean (so that
    SpeechBrain's own non-finite loss handling sees the non-finite value)."""
    if not bool((weights > 0).any()):
        return losses.mean()
    safe = torch.where(weights > 0, losses, torch.zeros_like(losses))
    return (weights * safe).sum()


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
