#!/usr/bin/env python3
"""Mining benchmark: real-time factors of F0 and embedding, end-to-end mining with 2 workers,
peak memory, and the pair stage at scale: synthetic speaker features (random 256-d unit
embeddings, pitch medians 80-300 Hz) for 2,338 (LibriSpeech-960), 6,000 (VoxCeleb2) and
20,000 speakers, each in a fresh process: table, CSV write, CSV size, the DM sampler's
start-up, peak memory; at 2,338 speakers also the in-memory table + pandas to_csv of before,
side by side. Prints tables; run from the repository root:

    python bench/mining.py [--folder bench_data/mining] [--scale_only]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hardsep_lib.data.audio import load_mono, resample  # noqa: E402
from hardsep_lib.data.prepare import prepare_data  # noqa: E402
from hardsep_lib.data.synth_corpus import generate_corpus  # noqa: E402
from hardsep_lib.mining import pairs as pair_rules  # noqa: E402
from hardsep_lib.mining.embeddings import make_backend  # noqa: E402
from hardsep_lib.mining.features import FeatureSettings  # noqa: E402
from hardsep_lib.mining.jobs import mine_pairs  # noqa: E402
from hardsep_lib.mining.pair_stream import PairStream  # noqa: E402
from hardsep_lib.mining.pitch import voiced_f0  # noqa: E402

LIBRISPEECH_960_SPEAKERS = 2338


def peak_rss_gib():
    """Peak resident memory of this process and of its finished children, in GiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 2**20


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", default="bench_data/mining")
    args = parser.parse_args()
    corpus = os.path.join(args.folder, "corpus")
    generate_corpus(corpus, seed=1, utterances_per_speaker=6, sentences_per_utterance=3)
    prepare_data("folder", corpus, os.path.join(args.folder, "prep"), held_out_fraction=0.0, n_mixtures=(0, 0, 0))
    sources = pd.read_csv(os.path.join(args.folder, "prep", "train_sources.csv"))
    seconds = float(sources["duration"].sum())
    signals = [load_mono(path)[0] for path in sources["wav"]]
    rows = [("corpus", f"{len(sources)} utterances, {seconds / 60:.1f} min of speech at 8 kHz", "")]

    _, dio_time = timed(lambda: [voiced_f0(signal, 8000, "dio") for signal in signals])
    rows.append(("F0 dio+stonemask, 1 core", f"{seconds / dio_time:.0f}x real time", "target: fast path"))
    subset = signals[:8]
    subset_seconds = sum(len(signal) for signal in subset) / 8000
    _, harvest_time = timed(lambda: [voiced_f0(signal, 8000, "harvest") for signal in subset])
    rows.append(("F0 harvest, 1 core", f"{subset_seconds / harvest_time:.1f}x real time", f"on {subset_seconds:.0f} s"))

    backend = make_backend("resemblyzer")
    upsampled = [resample(signal, 8000, backend.sample_rate) for signal in signals]
    backend.embed(upsampled[:1])  # warm-up: first call imports and initialises librosa
    _, embed_time = timed(backend.embed, upsampled)
    rows.append(("embedding resemblyzer, 2 threads", f"{seconds / embed_time:.0f}x real time", ""))

    cache = os.path.join(args.folder, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    settings = FeatureSettings()
    output = os.path.join(args.folder, "pairs.csv")
    _, end_to_end = timed(mine_pairs, os.path.join(args.folder, "prep", "train_sources.csv"), output, settings, cache,
                          None, 2)
    rows.append(("end to end, --workers 2 (cold cache)", f"{seconds / end_to_end:.0f}x real time",
                 "target >= 100x; 30 h in " + f"{30 * 3600 / (seconds / end_to_end) / 60:.0f} min"))
    _, cached = timed(mine_pairs, os.path.join(args.folder, "prep", "train_sources.csv"), output, settings, cache,
                      None, 2)
    rows.append(("end to end, re-run (warm cache)", f"{cached:.1f} s", ""))

    rows.append(("peak memory (max of process, workers)", f"{peak_rss_gib():.2f} GiB", "target < 2 GiB"))

    table = pd.DataFrame(rows, columns=["measure", "value", "note"])
    print(table.to_string(index=False))


SCALE_POINTS = (LIBRISPEECH_960_SPEAKERS, 6000, 20000)


def synthetic_features(n, seed=0):
    rng = np.random.default_rng(seed)
    speakers = pd.DataFrame({"spk_id": [f"s{i:05d}" for i in range(n)], "f0_median_hz": rng.uniform(80, 300, n)})
    embeddings = rng.standard_normal((n, 256)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return speakers, embeddings


def scale_point(n, folder, legacy):
    """One scale point, in this (fresh) process: prints one JSON line."""
    speakers, embeddings = synthetic_features(n)
    rule = pair_rules.HardPairRule("combined", 0.1)
    path = os.path.join(folder, f"pairs_{n}.csv")
    result = {"speakers": n, "pairs": n * (n - 1) // 2}
    if legacy:  # the previous way: whole matrices, then pandas to_csv
        table, result["table_s"] = timed(pair_rules.pair_table, speakers, embeddings, rule)
        _, result["write_s"] = timed(lambda: table.to_csv(path, index=False))
        result["output"] = "all (before)"
    else:
        stream, result["table_s"] = timed(PairStream, speakers, embeddings, rule)
        (rows, output), result["write_s"] = timed(stream.write, path, "auto")
        result.update(output=output, rows=rows)
    result["csv_gib"] = os.path.getsize(path) / 2**30
    result["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("SCALE " + json.dumps(result))


def sampler_point(n, folder):
    """The DM sampler's start-up on a written pair CSV, in its own process (as each DDP rank)."""
    from hardsep_lib.data.dynamic_mixing import load_hard_partners

    speakers, _ = synthetic_features(n)
    _, seconds = timed(load_hard_partners, os.path.join(folder, f"pairs_{n}.csv"), speakers["spk_id"].tolist())
    print("SCALE " + json.dumps({"sampler_s": seconds,
                                 "sampler_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def scale_table(folder):
    rows = []
    for n, legacy in [(LIBRISPEECH_960_SPEAKERS, True)] + [(n, False) for n in SCALE_POINTS]:
        result = subprocess.run([sys.executable, __file__, "--folder", folder, "--scale_point", str(n)]
                                + (["--legacy"] if legacy else []), capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        point = json.loads(result.stdout.split("SCALE ")[-1])
        sampler = subprocess.run([sys.executable, __file__, "--folder", folder, "--sampler_point", str(n)],
                                 capture_output=True, text=True)
        if sampler.returncode != 0:
            raise SystemExit(sampler.stderr[-2000:])
        point.update(json.loads(sampler.stdout.split("SCALE ")[-1]))
        rows.append((f"{point['speakers']:,}", f"{point['pairs'] / 1e6:.1f} M", point["output"],
                     f"{point['table_s']:.1f} s", f"{point['write_s']:.1f} s", f"{point['csv_gib']:.2f} GiB",
                     f"{point['peak_gib']:.2f} GiB", f"{point['sampler_s']:.2f} s",
                     f"{point['sampler_peak_gib']:.2f} GiB"))
        os.remove(os.path.join(folder, f"pairs_{n}.csv"))
    print(pd.DataFrame(rows, columns=["speakers", "pairs", "rows written", "table", "CSV write", "CSV size",
                                      "mining peak", "sampler start-up", "sampler peak"]).to_string(index=False))


if __name__ == "__main__":
    if "--sampler_point" in sys.argv:
        sampler_point(int(sys.argv[sys.argv.index("--sampler_point") + 1]), sys.argv[sys.argv.index("--folder") + 1])
    elif "--scale_point" in sys.argv:
        index = sys.argv.index("--scale_point")
        folder = sys.argv[sys.argv.index("--folder") + 1]
        os.makedirs(folder, exist_ok=True)
        scale_point(int(sys.argv[index + 1]), folder, "--legacy" in sys.argv)
    elif "--scale_only" in sys.argv:
        folder = sys.argv[sys.argv.index("--folder") + 1] if "--folder" in sys.argv else "bench_data/mining"
        os.makedirs(folder, exist_ok=True)
        scale_table(folder)
    else:
        main()
        scale_table("bench_data/mining")
