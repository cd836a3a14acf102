"""Per-utterance F0 and speaker embedding, computed once and cached on disk.

The cache holds one .npy per utterance and feature kind, named by a hash of the file's absolute
path, size and modification time: a re-run computes only new or changed files, an interrupted
run resumes, and shards of a cluster job array can share one cache folder.
    <cache_dir>/f0-<method>/<key>.npy              voiced-frame F0 in Hz, float32 (n_voiced,)
    <cache_dir>/emb-<backend>/<key>.npy            embedding, float32 (dim,)
"""

import hashlib
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from hardsep_lib.data.audio import UnusableAudio, load_usable, resample
from hardsep_lib.io_utils import atomic_path
from hardsep_lib.mining.embeddings import make_backend
from hardsep_lib.mining.pitch import voiced_f0

logger = logging.getLogger(__name__)

# Utterances per job: one embedding batch, and the unit of work a worker process takes.
BATCH_SIZE = 16


@dataclass(frozen=True)
class FeatureSettings:
    """Which features: F0 method (``dio``/``harvest``), embedding backend spec, and device."""

    f0_method: str = "dio"
    embedding: str = "resemblyzer"
    device: str = "cpu"


class FeatureCache:
    """Locates the cached F0 and embedding files of an utterance for given settings."""

    def __init__(self, cache_dir, settings):
        backend_slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", settings.embedding)
        self.f0_dir = os.path.join(cache_dir, f"f0-{settings.f0_method}")
        self.embedding_dir = os.path.join(cache_dir, f"emb-{backend_slug}")

    @staticmethod
    def key(path):
        """Hash of absolute path, size and mtime: changes whenever the file does."""
        stat = os.stat(path)
        text = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
        return hashlib.sha1(text.encode()).hexdigest()

    def paths(self, audio_path):
        """(F0 file, embedding file) for ``audio_path``."""
        key = self.key(audio_path)
        return os.path.join(self.f0_dir, key + ".npy"), os.path.join(self.embedding_dir, key + ".npy")

    def load(self, audio_path):
        """(voiced F0 array, embedding) from the cache, or None when either is missing or
        unreadable (a corrupt entry is removed with a warning, so it is computed again).
        Entries are read without unpickling."""
        try:
            f0_path, embedding_path = self.paths(audio_path)
        except OSError:
            return None
        if not (os.path.exists(f0_path) and os.path.exists(embedding_path)):
            return None
        try:
            return np.load(f0_path, allow_pickle=False), np.load(embedding_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            logger.warning("Corrupt feature cache entry for %s (%s): removed, computed again", audio_path, error)
            for path in (f0_path, embedding_path):
                os.remove(path)
            return None


def _save(path, array):
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as handle:
            np.save(handle, array)


_WORKER = {}


def _init_worker(settings, cache_dir, torch_threads):
    """Loads the embedding backend once per process."""
    torch.set_num_threads(torch_threads)
    _WORKER["backend"] = make_backend(settings.embedding, settings.device, os.path.join(cache_dir, "pretrained_models"))
    _WORKER["cache"] = FeatureCache(cache_dir, settings)
    _WORKER["settings"] = settings


def _compute_batch(paths):
    """Computes and caches the missing features of ``paths``; returns [(path, error or None)]."""
    backend, cache, settings = _WORKER["backend"], _WORKER["cache"], _WORKER["settings"]
    outcomes, to_embed = [], []
    for path in paths:
        try:
            signal, sample_rate = load_usable(path)
        except UnusableAudio as error:
            outcomes.append((path, str(error)))
            continue
        f0_path, embedding_path = cache.paths(path)
        if not os.path.exists(f0_path):
            _save(f0_path, voiced_f0(signal, sample_rate, settings.f0_method))
        if not os.path.exists(embedding_path):
            to_embed.append((embedding_path, resample(signal, sample_rate, backend.sample_rate)))
        outcomes.append((path, None))
    if to_embed:
        embeddings = backend.embed([signal for _, signal in to_embed])
        for (embedding_path, _), embedding in zip(to_embed, embeddings):
            _save(embedding_path, embedding)
    return outcomes


def compute_features(paths, settings, cache_dir, workers=1, num_shards=1, shard_index=0):
    """Fills the cache for the uncached files among ``paths`` (this shard's share of them).

    With ``workers`` > 1 the files are spread over that many processes (one torch thread
    each); otherwise they run here, batched, on ``settings.device``.
    Returns {path: error message} for the files that could not be used.
    """
    cache = FeatureCache(cache_dir, settings)
    unique = sorted(set(paths))
    mine = [path for index, path in enumerate(unique) if index % num_shards == shard_index]
    todo = [path for path in mine if cache.load(path) is None]
    logger.info("%d utterances in this shard, %d cached, %d to compute", len(mine), len(mine) - len(todo), len(todo))
    batches = [todo[start : start + BATCH_SIZE] for start in range(0, len(todo), BATCH_SIZE)]
    errors = {}
    with tqdm(total=len(todo), unit="utt", desc="features", disable=not todo) as progress:
        for outcomes in _run_batches(batches, settings, cache_dir, workers):
            errors.update({path: error for path, error in outcomes if error})
            progress.update(len(outcomes))
    return errors


def _run_batches(batches, settings, cache_dir, workers):
    """Yields each batch's outcomes, from a process pool or from this process."""
    if workers > 1 and batches:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(settings, cache_dir, 1)) as pool:
            yield from pool.imap_unordered(_compute_batch, batches)
    else:
        if batches:
            _init_worker(settings, cache_dir, torch.get_num_threads())
        for batch in batches:
            yield _compute_batch(batch)


def load_features(paths, settings, cache_dir):
    """{path: (voiced F0 array, embedding)} for every cached path; others are absent."""
    cache = FeatureCache(cache_dir, settings)
    loaded = {}
    for path in paths:
        features = cache.load(path)
        if features is not None:
            loaded[path] = features
    return loaded
