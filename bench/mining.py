#!/usr/bin/env python3
"""Mining benchmark: real-time factors of F0 and embedding, end-to-end mining with 2 workers,
the 2,338-speaker pair table, and peak memory. Prints a table; run from the repository root:

    python bench/mining.py [--folder bench_data/mining]
"""

import argparse
import os
import resource
import shutil
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

    rng = np.random.default_rng(0)
    speakers = pd.DataFrame({"spk_id": [f"s{i:04d}" for i in range(LIBRISPEECH_960_SPEAKERS)],
                             "f0_median_hz": rng.uniform(80, 300, LIBRISPEECH_960_SPEAKERS)})
    embeddings = rng.standard_normal((LIBRISPEECH_960_SPEAKERS, 192)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    pairs, pair_time = timed(pair_rules.pair_table, speakers, embeddings, "combined", 0.1)
    rows.append((f"pair table, {LIBRISPEECH_960_SPEAKERS} speakers", f"{pair_time:.2f} s for {len(pairs):,} pairs",
                 "target < 10 s"))
    rows.append(("peak memory (max of process, workers)", f"{peak_rss_gib():.2f} GiB", "target < 2 GiB"))

    table = pd.DataFrame(rows, columns=["measure", "value", "note"])
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
