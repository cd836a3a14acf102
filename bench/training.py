#!/usr/bin/env python3
"""Training benchmark on the tiny SepFormer (hparams/sepformer_tiny.yaml), in one run:
step time with plain SI-SNR vs WTL, DM loader throughput (0 and 2 workers) against the step's
consumption, test-stage seconds per mixture against SpeechBrain's save_results approach
(second forward pass + mir_eval twice), and peak memory. Run from the repository root:

    python bench/training.py [--folder bench_data/training]
"""

import argparse
import os
import resource
import sys
import time

import numpy as np
import pandas as pd
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hardsep_lib.data.dataio import fixed_mixture_dataset  # noqa: E402
from hardsep_lib.data.dynamic_mixing import DynamicMixingDataset  # noqa: E402
from hardsep_lib.evaluation.metrics import mixture_metrics  # noqa: E402
from hardsep_lib.data.prepare import prepare_data  # noqa: E402
from hardsep_lib.training.brain import Separation  # noqa: E402
from hardsep_lib.training.weighting import training_loss  # noqa: E402

STEPS = 40
N_TEST = 20


def build_brain(folder):
    with open("hparams/sepformer_tiny.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": os.path.join(folder, "out"), "data_folder": folder})
    brain = Separation(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                       run_opts={"device": "cpu", "noprogressbar": True}, checkpointer=None)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    return brain, hparams


def step_seconds(brain, batch):
    """Median seconds of one optimiser step on ``batch``: (plain SI-SNR, WTL), the two
    interleaved step by step so that machine noise hits both alike."""
    times = {False: [], True: []}
    for _ in range(STEPS):
        for weighted in (False, True):
            brain.hparams.weighted_train_loss = weighted
            start = time.perf_counter()
            brain.fit_batch(batch)
            times[weighted].append(time.perf_counter() - start)
    return float(np.median(times[False])), float(np.median(times[True]))


def loader_rate(dataset, batch_size, workers, batches=25):
    """DM mixtures per second through a DataLoader with PaddedBatch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=sb.dataio.batch.PaddedBatch)
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per batch
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def test_stage_seconds(brain, test_set, speechbrain_way):
    """Seconds per test mixture: one forward + fast_bss_eval, or SpeechBrain's save_results
    (the evaluate() forward, a second forward, and mir_eval's bss_eval_sources twice)."""
    import warnings

    from mir_eval.separation import bss_eval_sources

    warnings.filterwarnings("ignore", category=FutureWarning)  # mir_eval 0.8 deprecates bss_eval_sources
    loader = sb.dataio.dataloader.make_dataloader(test_set, batch_size=1)
    start = time.perf_counter()
    for index, batch in enumerate(loader):
        if index == N_TEST:
            break
        with torch.no_grad():
            predictions, targets = brain.compute_forward(batch.mix_sig, [batch.s1_sig, batch.s2_sig], sb.Stage.TEST)
            brain.compute_objectives(predictions, targets)
            if not speechbrain_way:
                mixture_metrics(batch.mix_sig.data[0], targets[0], predictions[0])
                continue
            predictions, targets = brain.compute_forward(batch.mix_sig, [batch.s1_sig, batch.s2_sig], sb.Stage.TEST)
            brain.compute_objectives(predictions, targets)
            mixture = torch.stack([batch.mix_sig.data[0]] * 2, dim=-1)
            bss_eval_sources(targets[0].t().numpy(), predictions[0].t().numpy())
            bss_eval_sources(targets[0].t().numpy(), mixture.t().numpy())
    return (time.perf_counter() - start) / N_TEST


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", default="bench_data/training")
    args = parser.parse_args()
    save = os.path.join(args.folder, "prep")
    prepare_data("synth", os.path.join(args.folder, "corpus"), save, seed=3, n_mixtures=(40, 20, N_TEST))
    torch.manual_seed(0)
    brain, hparams = build_brain(args.folder)
    sources = pd.read_csv(os.path.join(save, "train_sources.csv"), dtype={"spk_id": str})
    dm = DynamicMixingDataset(sources, 10000, hparams["training_signal_len"], seed=0)
    batch = sb.dataio.batch.PaddedBatch([dm[i] for i in range(hparams["batch_size"])])

    plain, weighted = step_seconds(brain, batch)
    losses = torch.randn(hparams["batch_size"])
    start = time.perf_counter()
    for _ in range(10000):
        training_loss(losses, -30.0, weighted=True)
    wtl_op = (time.perf_counter() - start) / 10000
    consumption = hparams["batch_size"] / plain
    rows = [
        ("train step, plain SI-SNR", f"{plain * 1000:.0f} ms", f"batch {hparams['batch_size']} x {hparams['training_signal_len']} samples"),
        ("train step, WTL", f"{weighted * 1000:.0f} ms", f"{100 * (weighted / plain - 1):+.1f}% (target < 2%)"),
        ("WTL loss op alone", f"{wtl_op * 1e6:.0f} us", f"{100 * wtl_op / plain:.3f}% of a step"),
        ("training consumes", f"{consumption:.1f} mixtures/s", ""),
    ]
    for workers in (0, 2):
        rate = loader_rate(dm, hparams["batch_size"], workers)
        rows.append((f"DM loader, {workers} workers", f"{rate:.0f} mixtures/s", f"{rate / consumption:.0f}x the consumption"))
    test_set = fixed_mixture_dataset(os.path.join(save, "test.csv"))
    ours = test_stage_seconds(brain, test_set, speechbrain_way=False)
    theirs = test_stage_seconds(brain, test_set, speechbrain_way=True)
    rows.append(("test stage, SpeechBrain save_results way", f"{theirs * 1000:.0f} ms/mixture", "2 forwards + mir_eval x2"))
    rows.append(("test stage, hardsep", f"{ours * 1000:.0f} ms/mixture", f"{theirs / ours:.1f}x faster (target >= 5x)"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows.append(("peak memory", f"{peak:.2f} GiB", ""))
    print(pd.DataFrame(rows, columns=["measure", "value", "note"]).to_string(index=False))


if __name__ == "__main__":
    main()
