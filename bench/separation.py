#!/usr/bin/env python3
"""separate.py benchmark: real-time factor per model and peak memory against file length.

For each shipped YAML (tiny SepFormer, full SepFormer, full Conv-TasNet, the CPU Conv-TasNet)
a model folder is made in the train.py output layout (resolved hyperparams.yaml + a
checkpoint of its randomly initialised modules: speed and memory do not depend on the
weights), then ``python separate.py`` runs in a fresh process on a generated mixture:
RTF = wall seconds / audio seconds (model loading included), peak RSS of that process. Run
from the repository root:

    python bench/separation.py [--folder bench_data/separation] [--seconds 30]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import soundfile as sf
from hyperpyyaml import load_hyperpyyaml, resolve_references

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # hardsep_lib for the YAMLs

MODELS = ("sepformer_tiny", "convtasnet_cpu", "convtasnet_hard", "sepformer_hard")
PEAK_PROBE = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
              "runpy.run_path('separate.py', run_name='__main__'); "
              "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def model_folder(name, folder):
    """A train.py-style output folder holding ``name``'s randomly initialised modules."""
    from speechbrain.utils.checkpoints import Checkpointer

    run = os.path.join(folder, name)
    if os.path.isdir(os.path.join(run, "checkpoints")):
        return run
    overrides = {"data_folder": folder, "output_folder": run}
    with open(f"hparams/{name}.yaml") as handle:
        text = resolve_references(handle, overrides).getvalue()
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "hyperparams.yaml"), "w") as handle:
        handle.write(text)
    hparams = load_hyperpyyaml(text)
    Checkpointer(os.path.join(run, "checkpoints"), recoverables=hparams["modules"]).save_checkpoint(
        meta={"plain_loss": 0.0, "weighted_loss": 0.0})
    return run


def mixture(path, seconds, rate=8000):
    if not os.path.isfile(path):
        rng = np.random.default_rng(0)
        t = np.arange(int(seconds * rate)) / rate
        signal = 0.1 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.05 * rng.standard_normal(len(t))
        sf.write(path, signal.astype(np.float32), rate)
    return path


def run_separate(model, audio, output, chunk_seconds=8.0):
    """(wall seconds, peak RSS in GiB) of one separate.py process."""
    command = [sys.executable, "-c", PEAK_PROBE, "separate.py", "--model", model, audio, "--output_folder", output,
               "--chunk_seconds", str(chunk_seconds)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    peak = int(result.stdout.split("PEAK_KIB")[-1].split()[0]) / 2**20
    return wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", default="bench_data/separation")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the RTF test file")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    rows = []
    audio = mixture(os.path.join(args.folder, f"mix_{args.seconds:g}s.wav"), args.seconds)
    for name in MODELS:
        wall, peak = run_separate(model_folder(name, args.folder), audio, os.path.join(args.folder, "out"))
        rows.append((f"RTF {name} ({args.seconds:g} s file, 8 s chunks)", f"{wall / args.seconds:.3f}",
                     f"{wall:.1f} s wall, peak {peak:.2f} GiB"))
    tiny = model_folder("sepformer_tiny", args.folder)
    for seconds in (10, 600):
        path = mixture(os.path.join(args.folder, f"mix_{seconds}s.wav"), seconds)
        wall, peak = run_separate(tiny, path, os.path.join(args.folder, "out"))
        rows.append((f"peak memory, sepformer_tiny, {seconds} s file", f"{peak:.2f} GiB", f"RTF {wall / seconds:.3f}"))
    print(pd.DataFrame(rows, columns=["measure", "value", "note"]).to_string(index=False))


if __name__ == "__main__":
    main()
