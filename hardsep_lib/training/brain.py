"""The Separation Brain: SpeechBrain's WSJ0Mix separation recipe with WTL, WVL and DM logging.

Encoder, MaskNet and Decoder come from the YAML (SepFormer or Conv-TasNet). Switches:
    weighted_train_loss   WTL: rank-weighted SI-SNR loss per batch (weighting.training_loss)
    weighted_valid_loss   WVL: rank-weighted SI-SNR over the whole validation set picks the
                          checkpoint and drives the LR scheduler
The test stage evaluates each mixture once and writes test_results.csv and test_summary.json.
"""

import logging
import os

import pandas as pd
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate

from hardsep_lib.training.ddp import gather_objects, is_distributed, sum_over_ranks
from hardsep_lib.evaluation.metrics import RESULT_COLUMNS, mixture_metrics, summarize
from hardsep_lib.io_utils import write_csv, write_json
from hardsep_lib.training.weighting import ValidationScores, training_loss

logger = logging.getLogger(__name__)


class Separation(sb.Brain):
    """Speech separation with hard-sample mining switches (see the module docstring)."""

    def compute_forward(self, mix, targets, stage):
        """Separates a batch.

        mix: PaddedData of (batch, samples) mixtures; targets: list of num_spks PaddedData of
        (batch, samples) sources. Returns (estimates, targets), each (batch, samples, num_spks).
        """
        mix = mix.data.to(self.device)
        targets = torch.stack([target.data for target in targets], dim=-1).to(self.device)
        if stage == sb.Stage.TRAIN and self.hparams.limit_training_signal_len:
            mix, targets = self.cut_signals(mix, targets)
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

    def compute_objectives(self, predictions, targets):
        """Per-mixture loss (batch,): -SI-SNR in dB after the best permutation."""
        return self.hparams.loss(targets, predictions)

    def cut_signals(self, mixture, targets):
        """A random segment of training_signal_len samples of the batch (same for all items)."""
        start = torch.randint(0, 1 + max(0, mixture.shape[1] - self.hparams.training_signal_len), (1,)).item()
        end = start + self.hparams.training_signal_len
        return mixture[:, start:end], targets[:, start:end, :]

    def fit_batch(self, batch):
        """One optimiser step on the WTL (or plain) loss of the batch's usable mixtures."""
        with self.training_ctx:
            predictions, targets = self.compute_forward(batch.mix_sig, [batch.s1_sig, batch.s2_sig], sb.Stage.TRAIN)
            losses = self.compute_objectives(predictions, targets)
        threshold = self.hparams.threshold if self.hparams.threshold_byloss else None
        loss, n_nonfinite = training_loss(losses.float(), threshold, self.hparams.weighted_train_loss)
        self.epoch_counts["nonfinite_mixtures"] += n_nonfinite
        if hasattr(batch, "hard_draw"):
            self.epoch_counts["hard_draws"] += int(batch.hard_draw.sum())
            self.epoch_counts["draws"] += len(batch.hard_draw)
        if loss is None or loss.item() >= self.hparams.loss_upper_lim:
            return self._skip_batch(predictions)
        self.scaler.scale(loss).backward()
        self.optimizers_step()
        return loss.detach().cpu()

    def _skip_batch(self, predictions):
        """Counts a batch with no usable loss. Alone, it is simply not stepped; under DDP a
        zero loss joins the gradient all-reduce so that the ranks stay in step."""
        self.epoch_counts["skipped_batches"] += 1
        logger.warning("No finite loss below loss_upper_lim in this batch; skipped (%d this epoch)",
                       self.epoch_counts["skipped_batches"])
        if is_distributed():
            (predictions.sum() * 0.0).backward()
            self.optimizers_step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        return torch.tensor(float("nan"))

    @torch.no_grad()
    def evaluate_batch(self, batch, stage):
        """Validation: stores each mixture's SI-SNR for WVL. Test: each mixture's metrics."""
        predictions, targets = self.compute_forward(batch.mix_sig, [batch.s1_sig, batch.s2_sig], stage)
        losses = self.compute_objectives(predictions, targets)
        if stage == sb.Stage.VALID:
            self.valid_scores.add(batch.id, -losses)
        elif stage == sb.Stage.TEST:
            self._collect_test_rows(batch, predictions, targets)
        return losses.mean().detach()

    def _collect_test_rows(self, batch, predictions, targets):
        mixtures, relative_lengths = batch.mix_sig
        for row, mixture_id in enumerate(batch.id):
            samples = int(round(relative_lengths[row].item() * mixtures.shape[1]))
            metrics = mixture_metrics(mixtures[row, :samples].to(self.device), targets[row, :samples],
                                      predictions[row, :samples])
            self.test_rows.append({"snt_id": mixture_id, **metrics, "s1_spk": batch.s1_spk[row],
                                   "s2_spk": batch.s2_spk[row]})

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-stage accumulators; selects the DM epoch."""
        if stage == sb.Stage.TRAIN:
            self.epoch_counts = {"hard_draws": 0, "draws": 0, "nonfinite_mixtures": 0, "skipped_batches": 0}
            if getattr(self, "dm_dataset", None) is not None:
                self.dm_dataset.set_epoch(epoch)
        elif stage == sb.Stage.VALID:
            self.valid_scores = ValidationScores()
        else:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stage; after validation, anneals the LR and keeps the best checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = self._train_stats(stage_loss)
        elif stage == sb.Stage.VALID:
            self._end_validation(epoch)
        else:
            self._end_test()

    def _train_stats(self, stage_loss):
        hard, draws, nonfinite, skipped = sum_over_ranks(
            [self.epoch_counts[key] for key in ("hard_draws", "draws", "nonfinite_mixtures", "skipped_batches")]
        )
        stats = {"loss": stage_loss, "nonfinite_mixtures": int(nonfinite), "skipped_batches": int(skipped)}
        if draws:
            stats["hard_pair_fraction"] = hard / draws
        return stats

    def _end_validation(self, epoch):
        mean_si_snr, weighted_si_snr = self.valid_scores.summary()
        selected = weighted_si_snr if self.hparams.weighted_valid_loss else mean_si_snr
        stats = {"si-snr": mean_si_snr, "weighted_si-snr": weighted_si_snr, "selection_loss": -selected}
        current_lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.hparams.lr_scheduler, ReduceLROnPlateau):
            current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, -selected)
            update_learning_rate(self.optimizer, next_lr)
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": current_lr}, train_stats=self.train_stats, valid_stats=stats
        )
        self.checkpointer.save_and_keep_only(meta=stats, min_keys=["selection_loss"])

    def _end_test(self):
        results = pd.DataFrame([row for part in gather_objects(self.test_rows) for row in part], columns=RESULT_COLUMNS)
        if sb.utils.distributed.if_main_process():
            write_test_outputs(results, self.hparams)
        self.hparams.train_logger.log_stats(
            stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
            test_stats={"si-snr_i": float(results["si-snr_i"].mean())},
        )


def write_test_outputs(results, hparams):
    """Writes test_results.csv and test_summary.json to output_folder and logs the summary."""
    results = results.sort_values("snt_id", kind="stable").reset_index(drop=True)
    write_csv(results, os.path.join(hparams.output_folder, "test_results.csv"))
    features = _optional_table(getattr(hparams, "test_features_csv", None), "ID")
    reference = _optional_table(getattr(hparams, "reference_results_csv", None), "snt_id")
    summary = summarize(results, features, reference)
    write_json(summary.to_dict(orient="records"), os.path.join(hparams.output_folder, "test_summary.json"))
    logger.info("Test summary (%s):\n%s", hparams.output_folder, summary.to_string(index=False, float_format="%.2f"))


def _optional_table(path, id_column):
    if not path:
        return None
    if not os.path.isfile(path):
        logger.warning("%s not found; its subset is left out of the test summary", path)
        return None
    return pd.read_csv(path, dtype={id_column: str})
