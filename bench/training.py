#!/usr/bin/env python3
"""Training benchmark on the tiny SepFormer (hparams/sepformer_tiny.yaml), in one run:
optimiser-step time with the plain loss vs WTL, side by side (interleaved step by step), for
(a) one batch of 4, (b) 2 gloo processes x batch 2, (c) batch 1 x accumulation 4 (the
SepFormer YAML's step: exact WTL there adds one no-grad forward pass per step); DM loader throughput (0 and 2 workers) against the step's
consumption, test-stage seconds per mixture against SpeechBrain's save_results approach
(second forward pass + mir_eval twice), and peak memory. Run from the repository root:

    python bench/training.py [--folder bench_data/training]
"""

import argparse
import os
import resource
import socket
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
from hardsep_lib.data.prepare import prepare_data  # noqa: E402
from hardsep_lib.evaluation.metrics import mixture_metrics  # noqa: E402
from hardsep_lib.training.brain import Separation  # noqa: E402
from hardsep_lib.training.weighting import StepLossReduction  # noqa: E402

STEPS = 40
N_TEST = 20


def build_brain(folder, batch_size=4, grad_accumulation_factor=1, run_opts=None):
    with open("hparams/sepformer_tiny.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": os.path.join(folder, "out"), "data_folder": folder,
                                            "batch_size": batch_size})
    brain = Separation(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                       run_opts={"device": "cpu", "noprogressbar": True,
                                 "grad_accumulation_factor": grad_accumulation_factor, **(run_opts or {})},
                       checkpointer=None)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    return brain, hparams


def step_seconds(brain, dataset, batch_size, steps=STEPS):
    """Median seconds of one optimiser step with the plain loss and with WTL, interleaved step
    by step (so that machine noise hits both alike), through SpeechBrain's own fit_batch and
    the Brain's train loader (which, with WTL, reads one optimiser step ahead)."""
    times = {False: [], True: []}
    factor = brain.grad_accumulation_factor
    loaders = {}
    for weighted in (False, True):
        brain.hparams.train_loss_reduction.weighted = weighted
        loaders[weighted] = iter(brain.make_dataloader(dataset, sb.Stage.TRAIN, ckpt_prefix=None,
                                                       batch_size=batch_size, collate_fn=sb.dataio.batch.PaddedBatch))
    for _ in range(steps):
        for weighted in (False, True):
            brain.hparams.train_loss_reduction.weighted = weighted
            start = time.perf_counter()
            for _ in range(factor):
                brain.step += 1
                brain.fit_batch(next(loaders[weighted]))
            times[weighted].append(time.perf_counter() - start)
    return float(np.median(times[False])), float(np.median(times[True]))


def _ddp_worker(rank, folder, port, results):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    brain, hparams = build_brain(folder, batch_size=2, run_opts={"distributed_backend": "gloo"})
    dataset = dm_dataset(folder, hparams)
    results[rank] = step_seconds(brain, dataset, 2, steps=STEPS // 2)
    torch.distributed.destroy_process_group()


def dm_dataset(folder, hparams):
    sources = pd.read_csv(os.path.join(folder, "prep", "train_sources.csv"), dtype={"spk_id": str})
    return DynamicMixingDataset(sources, 100000, hparams["training_signal_len"], seed=0)


def ddp_step_seconds(folder):
    """(plain, WTL) median step seconds of rank 0 of 2 gloo processes x batch 2."""
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(folder, port, results), nprocs=2)
    return results[0]


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
            predictions, targets = brain.compute_forward(batch, sb.Stage.TEST)
            brain.mixture_losses((predictions, targets))
            if not speechbrain_way:
                mixture_metrics(batch.mix_sig.data[0], targets[0], predictions[0])
                continue
            predictions, targets = brain.compute_forward(batch, sb.Stage.TEST)
            brain.mixture_losses((predictions, targets))
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
    rows = []
    configurations = [("(a) one process, batch 4", dict(batch_size=4)),
                      ("(c) batch 1 x accumulation 4", dict(batch_size=1, grad_accumulation_factor=4))]
    for label, options in configurations:
        brain, hparams = build_brain(args.folder, **options)
        plain, weighted = step_seconds(brain, dm_dataset(args.folder, hparams), options["batch_size"])
        rows.append((f"step {label}: plain / WTL", f"{plain * 1000:.0f} / {weighted * 1000:.0f} ms",
                     f"WTL {100 * (weighted / plain - 1):+.1f}%"))
        if label.startswith("(a)"):
            one_batch = plain
    plain, weighted = ddp_step_seconds(args.folder)
    rows.insert(1, ("step (b) 2 gloo processes x batch 2: plain / WTL", f"{plain * 1000:.0f} / {weighted * 1000:.0f} ms",
                    f"WTL {100 * (weighted / plain - 1):+.1f}%"))
    brain, hparams = build_brain(args.folder)
    losses = torch.randn(hparams["batch_size"])
    reduction = StepLossReduction(weighted=True, threshold=-30.0)
    start = time.perf_counter()
    for _ in range(10000):
        reduction(losses)
    wtl_op = (time.perf_counter() - start) / 10000
    consumption = hparams["batch_size"] / one_batch
    rows.append(("WTL reduction op alone", f"{wtl_op * 1e6:.0f} us", f"{100 * wtl_op / one_batch:.3f}% of step (a)"))
    rows.append(("training consumes (a)", f"{consumption:.1f} mixtures/s", ""))
    dm = dm_dataset(args.folder, hparams)
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
