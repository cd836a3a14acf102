"""Separating recordings of any length with a trained model: chunked, stitched, streamed.

A file longer than one chunk is read chunk by chunk (``chunk_seconds``, overlapping by
``overlap``), each chunk is resampled to the model's rate (torchaudio's windowed-sinc
resampler, with a 50 ms margin on each side that absorbs its edge effects), separated,
resampled back, and stitched to the previous chunk by overlap-add with linear cross-fades.
Before stitching, the chunk's outputs are re-ordered to best match the previous chunk on the
overlap (normalised correlation over every permutation), as Asteroid's ``LambdaOverlapAdd``
does, so that speakers never swap at a boundary. Outputs are written as they are finished:
memory stays flat in the file's length.
"""

import contextlib
import itertools
import logging
import os

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
from tqdm import tqdm

from hardsep_lib.data.audio import SILENCE_PEAK, SkipReport
from hardsep_lib.errors import OptionError
from hardsep_lib.io_utils import atomic_path

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
RESAMPLING_MARGIN_SECONDS = 0.05
PROGRESS_MIN_CHUNKS = 4


class UnusableInput(Exception):
    """An input file that cannot be separated (the message says why)."""


def chunk_starts(total, chunk, hop):
    """Start samples of the chunks covering ``total`` samples (the last one ends at ``total``)."""
    if total <= chunk:
        return [0]
    starts = list(range(0, total - chunk, hop))
    return starts + [total - chunk] if starts[-1] != total - chunk else starts


def best_permutation(previous, current):
    """The column order of ``current`` (samples, S) that best matches ``previous`` (samples, S):
    the permutation maximising the summed normalised correlation."""
    def normalised(x):
        return x / (np.linalg.norm(x, axis=0, keepdims=True) + 1e-8)

    similarity = normalised(previous).T @ normalised(current)  # (S, S)
    speakers = range(similarity.shape[0])
    return max(itertools.permutations(speakers), key=lambda order: sum(similarity[i, order[i]] for i in speakers))


class ChunkedSeparator:
    """Separates files with ``separate(mixture (1, samples)) -> (1, samples, S)`` at ``model_rate``.

    Parameters
    ----------
    separate : callable
        The model's batch separation (e.g. SpeechBrain's ``SepformerSeparation.separate_batch``).
    model_rate : int
        The model's sample rate in Hz.
    chunk_seconds : float
        Chunk length in seconds; 0 separates every file in one pass (memory grows with length).
    overlap : float in [0, 0.9]
        Share of a chunk that overlaps the next one.
    """

    def __init__(self, separate, model_rate, chunk_seconds=8.0, overlap=0.25):
        if chunk_seconds < 0 or not 0.0 <= overlap <= 0.9:
            raise OptionError(f"--chunk_seconds must be >= 0 and --overlap in [0, 0.9], got {chunk_seconds}, {overlap}")
        self.separate = separate
        self.model_rate = model_rate
        self.chunk_seconds = chunk_seconds
        self.overlap = overlap

    def _separate_span(self, handle, start, stop, rate):
        """Estimates (stop - start, S) of the samples [start, stop) of an open SoundFile."""
        margin = 0 if rate == self.model_rate else int(round(RESAMPLING_MARGIN_SECONDS * rate))
        first, last = max(0, start - margin), min(handle.frames, stop + margin)
        handle.seek(first)
        signal = handle.read(last - first, dtype="float32", always_2d=True)
        if signal.shape[1] > 1:
            signal = signal.mean(axis=1, keepdims=True)
        if not np.isfinite(signal).all():
            raise UnusableInput(f"non-finite samples near {start / rate:.2f} s")
        mixture = torch.from_numpy(signal[:, 0])[None]
        if rate != self.model_rate:
            mixture = torchaudio.functional.resample(mixture, rate, self.model_rate)
        with torch.no_grad():
            estimates = self.separate(mixture).detach().cpu()[0].T  # (S, samples at model rate)
        if rate != self.model_rate:
            estimates = torchaudio.functional.resample(estimates, self.model_rate, rate)
        estimates = estimates.T.numpy()
        offset = start - first
        estimates = estimates[offset:offset + stop - start]
        if len(estimates) < stop - start:  # resampling rounding: pad the last sample or two
            estimates = np.pad(estimates, ((0, stop - start - len(estimates)), (0, 0)))
        return estimates, float(np.abs(signal).max(initial=0.0))

    def separate_file(self, path, output_paths):
        """Separates ``path`` into ``output_paths`` (one per speaker, written atomically at the
        input's rate). Raises UnusableInput for unreadable, empty, silent or non-finite audio."""
        try:
            handle = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise UnusableInput(f"unreadable audio ({error})") from error
        with handle:
            rate, total = handle.samplerate, handle.frames
            if total == 0:
                raise UnusableInput("empty audio")
            if handle.channels > 1:
                logger.warning("%s has %d channels: mixed down to mono", path, handle.channels)
            chunk = total if self.chunk_seconds == 0 else min(total, int(round(self.chunk_seconds * rate)))
            hop = max(1, chunk - int(round(self.overlap * chunk)))
            starts = chunk_starts(total, chunk, hop)
            with contextlib.ExitStack() as renames:  # each output renamed into place only on success
                tmp_paths = [renames.enter_context(atomic_path(target)) for target in output_paths]
                writers = [sf.SoundFile(tmp, "w", samplerate=rate, channels=1, subtype="FLOAT", format="WAV")
                           for tmp in tmp_paths]
                try:
                    self._stitch(handle, starts, chunk, total, rate, writers, path)
                finally:
                    for writer in writers:
                        writer.close()

    def _stitch(self, handle, starts, chunk, total, rate, writers, path):
        """Separates the chunks at ``starts`` and writes each sample once it is final.

        Invariant: samples [0, written) are written; ``pending`` holds the previous chunk's
        estimates of [written, previous stop), which the next chunk overlaps.
        """
        pending, written, peak = None, 0, 0.0
        progress = tqdm(starts, desc=os.path.basename(path), unit="chunk", leave=False,
                        disable=len(starts) < PROGRESS_MIN_CHUNKS)
        for index, start in enumerate(progress):
            stop = min(total, start + chunk)
            estimates, chunk_peak = self._separate_span(handle, start, stop, rate)
            peak = max(peak, chunk_peak)
            estimates = estimates[written - start:]  # now [written, stop)
            if pending is not None:
                shared = len(pending)
                estimates = estimates[:, best_permutation(pending, estimates[:shared])]
                ramp = np.linspace(0.0, 1.0, shared + 2, dtype=np.float32)[1:-1, None]
                estimates[:shared] = pending * (1.0 - ramp) + estimates[:shared] * ramp
            final_until = starts[index + 1] if index + 1 < len(starts) else stop
            for speaker, writer in enumerate(writers):
                writer.write(estimates[:final_until - written, speaker])
            pending = estimates[final_until - written:] if index + 1 < len(starts) else None
            written = final_until
        if peak < SILENCE_PEAK:
            raise UnusableInput("all-silent audio (peak below -80 dBFS)")


def expand_inputs(inputs):
    """Audio paths from files, folders (searched recursively) and CSVs with a ``mix_wav`` column."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(root, name) for root, _, names in os.walk(item) for name in names
                            if name.lower().endswith(AUDIO_SUFFIXES))
        elif item.lower().endswith(".csv"):
            table = pd.read_csv(item)
            if "mix_wav" not in table.columns:
                raise OptionError(f"{item} has no mix_wav column")
            paths += table["mix_wav"].astype(str).tolist()
        else:
            paths.append(item)
    if not paths:
        raise OptionError("no input audio found in " + ", ".join(inputs))
    return paths


def output_names(paths, output_folder, num_spks):
    """{input path: [<name>_s1.wav, ...]} in ``output_folder``; repeated names get a counter."""
    seen, names = {}, {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        name = stem if count == 0 else f"{stem}-{count}"
        names[path] = [os.path.join(output_folder, f"{name}_s{k + 1}.wav") for k in range(num_spks)]
    return names


def separate_files(separator, inputs, output_folder, num_spks):
    """Separates every input; unusable ones are named and skipped. Returns the SkipReport."""
    paths = expand_inputs(inputs)
    report = SkipReport("separation")
    for path, outputs in output_names(paths, output_folder, num_spks).items():
        try:
            separator.separate_file(path, outputs)
            logger.info("%s -> %s", path, ", ".join(outputs))
        except UnusableInput as error:
            report.add(path, str(error))
    logger.log(logging.WARNING if report.skipped else logging.INFO, report.summary())
    return report
