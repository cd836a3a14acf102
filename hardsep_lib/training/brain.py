"""The Separation Brain: SpeechBrain's WSJ0Mix separation recipe with WTL, WVL and DM logging.

Encoder, MaskNet and Decoder come from the YAML (SepFormer or Conv-TasNet). SpeechBrain's own
training loop (``fit_batch``: gradient accumulation, ``no_sync``, AMP, ``max_grad_norm``,
``skip_nonfinite_grads``, the ``on_fit_batch_*`` hooks) runs unchanged; this class overrides
``compute_forward``, ``compute_objectives``, the stage hooks and, for WTL only,
``make_dataloader`` (to see the micro-batches of one optimiser step before the first of
them is back-propagated).

Switches:
    weighted_train_loss   WTL: the rank weights of docs/method.md over every mixture of one
                          optimiser step (batch_size x grad_accumulation_factor x processes)
    weighted_valid_loss   WVL: which validation score picks the tested checkpoint. Both the
                          plain and the weighted best checkpoints are kept, and the LR
                          scheduler always follows the plain validation SI-SNR, so one run
                          gives both rows.
The test stage evaluates each mixture once and writes test_results.csv and test_summary.json.
"""

import itertools
import logging
import os

import pandas as pd
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate

from hardsep_lib.evaluation.metrics import RESULT_COLUMNS, mixture_metrics, summarize
from hardsep_lib.io_utils import write_csv, write_json
from hardsep_lib.training.checkpoints import set_aside_corrupt_checkpoints
from hardsep_lib.training.ddp import (
    gather_floats,
    gather_objects,
    rank_and_world,
    sum_over_ranks,
)
from hardsep_lib.training.weighting import ValidationScores, apply_weights

logger = logging.getLogger(__name__)

# Checkpoint meta keys (lower is better) of the two selection rules.
SELECTION_KEYS = {"plain": "plain_loss", "weighted": "weighted_loss"}


class StepWindows:
    """A train DataLoader read one optimiser step ahead.

    Yields the loader's micro-batches unchanged; before yielding the first micro-batch of an
    optimiser step it fetches all micro-batches of that step into ``window``, so that WTL can
    rank the step's mixtures before any of them is back-propagated. Step boundaries follow
    the Brain's step counter, so a run resumed mid-epoch stays aligned with SpeechBrain's
    ``should_step``.
    """

    def __init__(self, loader, brain):
        self.loader = loader
        self.brain = brain
        self.window = []

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        factor = self.brain.grad_accumulation_factor
        while True:
            self.window = list(itertools.islice(iterator, factor - self.brain.step % factor))
            if not self.window:
                return
            yield from self.window


class Separation(sb.Brain):
    """Speech separation with hard-sample mining switches (see the module docstring)."""

    def compute_forward(self, batch, stage):
        """Separates a batch: (estimates, targets), each (batch, samples, num_spks)."""
        mix = batch.mix_sig.data.to(self.device)
        targets = torch.stack([batch.s1_sig.data, batch.s2_sig.data], dim=-1).to(self.device)
        mix_w = self.modules.encoder(mix)
        est_mask = self.modules.masknet(mix_w)
        sep_h = torch.stack([mix_w] * self.hparams.num_spks) * est_mask
        est_source = torch.cat(
            [self.modules.decoder(sep_h[i]).unsqueeze(-1) for i in range(self.hparams.num_spks)], dim=-1
        )
        # The encoder's stride may drop the last few samples; pad back to the input length.
        samples = mix.size(1)
        if est_source.size(1) < samples:
            est_source = F.pad(est_source, (0, 0, 0, samples - est_source.size(1)))
        return est_source[:, :samples, :], targets

    def mixture_losses(self, predictions):
        """Per-mixture loss (batch,): -SI-SNR in dB after the best permutation."""
        estimates, targets = predictions
        return self.hparams.loss(targets, estimates)

    def compute_objectives(self, predictions, batch, stage):
        """TRAIN: the step-reduced loss (WTL or plain). VALID/TEST: records each mixture's
        scores and returns the mean loss."""
        losses = self.mixture_losses(predictions)
        if stage == sb.Stage.TRAIN:
            self._count_draws(batch)
            return self._training_loss(losses, batch)
        if stage == sb.Stage.VALID:
            self.valid_scores.add(batch.id, -losses)
        else:
            self._collect_test_rows(batch, predictions)
        return losses.mean()

    # ------------------------------------------------------------------ WTL
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader; for training with WTL, read one optimiser step ahead (StepWindows)."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN and self.hparams.train_loss_reduction.weighted:
            self.step_windows = StepWindows(loader, self)
            return self.step_windows
        return loader

    def _training_loss(self, losses, batch):
        """The loss SpeechBrain's fit_batch back-propagates (it divides by the accumulation factor).

        Plain: the micro-batch's mean (after the threshold drop), as in SpeechBrain's recipe.
        WTL: sum_i c w_i l_i over the micro-batch's mixtures, with w the rank weights over the
        whole optimiser step (all micro-batches, all processes) and c = accumulation factor x
        processes, which undoes SpeechBrain's division and DDP's averaging: the step's
        gradient is sum_i w_i grad l_i over all its mixtures, as if they were one batch.
        """
        reduction = self.hparams.train_loss_reduction
        if not reduction.weighted:
            weights, n_nonfinite = reduction.weights(losses)
            self.epoch_counts["nonfinite_mixtures"] += n_nonfinite
            return apply_weights(losses, weights)
        weights = self._step_weights(batch, losses.detach())
        return apply_weights(losses, weights.to(losses.dtype)) * self.grad_accumulation_factor * rank_and_world()[1]

    def _step_weights(self, batch, losses):
        """This micro-batch's slice of the rank weights over its whole optimiser step.

        A step of one micro-batch (on every process) is ranked by its own losses. A step of
        several triggers, at its first micro-batch, one no-grad forward pass over the whole
        window (the same signals, so the same losses when the model has no dropout; with
        dropout the ranking comes from that pass). Under DDP the detached losses (a few
        floats) are all-gathered so that every process ranks the same step-wide set.
        """
        window = self.step_windows.window
        if getattr(self, "_ranked_window", None) is not window:
            if len(window) == 1:
                window_losses = [losses]
            else:
                with torch.no_grad(), self.training_ctx:
                    window_losses = [self.mixture_losses(self.compute_forward(micro, sb.Stage.TRAIN)).detach()
                                     for micro in window]
            self._ranked_window = window
            self._window_weights = self._rank_over_processes(window_losses)
        position = next(index for index, micro in enumerate(window) if micro is batch)
        return self._window_weights[position].to(losses.device)

    def _rank_over_processes(self, window_losses):
        """Per-micro-batch weight tensors from the window's losses, ranked with every process's."""
        local = torch.cat([losses.float().cpu() for losses in window_losses])
        # every rank sends at most one step's worth: micro-batch size x accumulation factor
        capacity = max(len(local), self.hparams.batch_size * self.grad_accumulation_factor)
        parts = gather_floats(local.tolist(), capacity)
        rank = rank_and_world()[0]
        values = torch.tensor([value for part in parts for value in part], dtype=torch.float64)
        weights, n_nonfinite = self.hparams.train_loss_reduction.weights(values)
        if rank == 0:  # the same on every process: counted once (the epoch stats sum over processes)
            self.epoch_counts["nonfinite_mixtures"] += n_nonfinite
            self.epoch_counts["weighted_loss_sum"] += float((weights * values.nan_to_num())[weights > 0].sum())
            self.epoch_counts["ranked_steps"] += 1
        offset = sum(len(part) for part in parts[:rank])
        mine = weights[offset:offset + len(local)]
        return list(torch.split(mine, [len(losses) for losses in window_losses]))

    # ------------------------------------------------------------------ recovery
    def _set_aside_corrupt_checkpoints(self):
        if self.checkpointer is not None and sb.utils.distributed.if_main_process():
            set_aside_corrupt_checkpoints(self.checkpointer.checkpoints_dir)
        sb.utils.distributed.ddp_barrier()

    def on_fit_start(self):
        """SpeechBrain's, after setting aside checkpoints a kill or full disk left unreadable."""
        self._set_aside_corrupt_checkpoints()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """SpeechBrain's, after setting aside unreadable checkpoints."""
        self._set_aside_corrupt_checkpoints()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    # ------------------------------------------------------------------ bookkeeping
    def _count_draws(self, batch):
        if hasattr(batch, "hard_draw"):
            self.epoch_counts["hard_draws"] += int(batch.hard_draw.sum())
            self.epoch_counts["hard_pairs"] += int(batch.hard_pair.sum())
            self.epoch_counts["draws"] += len(batch.hard_draw)

    def _collect_test_rows(self, batch, predictions):
        estimates, targets = predictions
        mixtures, relative_lengths = batch.mix_sig
        for row, mixture_id in enumerate(batch.id):
            samples = int(round(relative_lengths[row].item() * mixtures.shape[1]))
            metrics = mixture_metrics(mixtures[row, :samples].to(self.device), targets[row, :samples],
                                      estimates[row, :samples])
            self.test_rows.append({"snt_id": mixture_id, **metrics, "s1_spk": batch.s1_spk[row],
                                   "s2_spk": batch.s2_spk[row]})

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-stage accumulators; selects the training data's epoch."""
        if stage == sb.Stage.TRAIN:
            self.epoch_counts = {"hard_draws": 0, "hard_pairs": 0, "draws": 0, "nonfinite_mixtures": 0,
                                 "weighted_loss_sum": 0.0, "ranked_steps": 0}
            if getattr(self, "train_dataset", None) is not None:
                self.train_dataset.set_epoch(epoch)
        elif stage == sb.Stage.VALID:
            self.valid_scores = ValidationScores()
        else:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stage; after validation, anneals the LR and keeps the best checkpoints."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = self._train_stats(stage_loss)
        elif stage == sb.Stage.VALID:
            self._end_validation(epoch)
        else:
            self._end_test()

    def _train_stats(self, stage_loss):
        keys = ("hard_draws", "hard_pairs", "draws", "nonfinite_mixtures", "weighted_loss_sum", "ranked_steps")
        hard, pairs, draws, nonfinite, weighted_sum, steps = sum_over_ranks([self.epoch_counts[key] for key in keys])
        stats = {"loss": stage_loss, "nonfinite_mixtures": int(nonfinite)}
        if steps:  # WTL: the step-wide weighted loss (the logged "loss" is this process's share)
            stats["step_weighted_loss"] = weighted_sum / steps
        if draws:
            stats["hard_draw_fraction"] = hard / draws  # pairs replaced by a hard draw (~ hard_ratio)
            stats["hard_pair_fraction"] = pairs / draws  # pairs hard by the rule, natural ones included
        return stats

    def _end_validation(self, epoch):
        """Both validation scores are logged and both best checkpoints kept; the LR schedule
        follows the plain SI-SNR whatever ``weighted_valid_loss`` says (WVL selects only)."""
        mean_si_snr, weighted_si_snr = self.valid_scores.summary()
        stats = {"si-snr": mean_si_snr, "weighted_si-snr": weighted_si_snr,
                 SELECTION_KEYS["plain"]: -mean_si_snr, SELECTION_KEYS["weighted"]: -weighted_si_snr}
        current_lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.hparams.lr_scheduler, ReduceLROnPlateau):
            current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, -mean_si_snr)
            update_learning_rate(self.optimizer, next_lr)
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": current_lr}, train_stats=self.train_stats, valid_stats=stats
        )
        self.checkpointer.save_and_keep_only(meta=stats, min_keys=list(SELECTION_KEYS.values()))

    def _end_test(self):
        results = pd.DataFrame([row for part in gather_objects(self.test_rows) for row in part], columns=RESULT_COLUMNS)
        if sb.utils.distributed.if_main_process():
            write_test_outputs(results, self.hparams)
        self.hparams.train_logger.log_stats(
            stats_meta={"Epoch loaded": self.hparams.epoch_counter.current,
                        "selection": getattr(self, "test_selection", "plain")},
            test_stats={"si-snr_i": float(results["si-snr_i"].mean())},
        )


def write_test_outputs(results, hparams):
    """Writes test_results.csv and test_summary.json to test_folder and logs the summary."""
    results = results.sort_values("snt_id", kind="stable").reset_index(drop=True)
    folder = getattr(hparams, "test_folder", None) or hparams.output_folder
    summary_path = os.path.join(folder, "test_summary.json")
    if os.path.exists(summary_path):  # never leave an older summary beside newer results
        os.remove(summary_path)
    write_csv(results, os.path.join(folder, "test_results.csv"))
    features = _optional_table(getattr(hparams, "test_features_csv", None), "ID", ["ID", "is_hard"])
    reference = _optional_table(getattr(hparams, "reference_results_csv", None), "snt_id", ["snt_id", "si-snr_i"])
    summary = summarize(results, features, reference)
    write_json(summary.to_dict(orient="records"), summary_path)
    logger.info("Test summary (%s):\n%s", folder, summary.to_string(index=False, float_format="%.2f"))


def _optional_table(path, id_column, required):
    """An optional summary table, or None (with a warning) when missing or lacking ``required``."""
    if not path:
        return None
    if not os.path.isfile(path):
        logger.warning("%s not found; its subset is left out of the test summary", path)
        return None
    table = pd.read_csv(path, dtype={id_column: str})
    missing = [column for column in required if column not in table.columns]
    if missing:
        logger.warning("%s lacks %s; its subset is left out of the test summary", path, ", ".join(missing))
        return None
    return table
