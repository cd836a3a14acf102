"""Audio inspection without full decoding, skip bookkeeping, and cached resampling."""

import logging
import os
from dataclasses import dataclass, field
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from hardsep_lib.io_utils import write_wav

logger = logging.getLogger(__name__)

# A file whose every sample has |x| below this (-80 dBFS) is digital silence.
SILENCE_PEAK = 1e-4
# Samples decoded per block by the sample check (one full pass: finite, not all silent).
SILENCE_BLOCK = 8192
# Files shorter than this are left out at preparation (the models' encoders need a few
# hundred samples; a 10-sample file would crash training at its first batch).
MIN_SECONDS = 0.25


class UnusableAudio(Exception):
    """An audio file that cannot be used: unreadable, corrupt, empty or all-silent."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: ``frames`` samples per channel at ``sample_rate`` Hz."""

    path: str
    frames: int
    sample_rate: int


def read_info(path):
    """Reads the header of ``path`` (no decoding); raises UnusableAudio for a bad or empty file."""
    if not os.path.isfile(path):
        raise UnusableAudio("missing file")
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise UnusableAudio(f"unreadable or corrupt audio ({error})") from error
    if info.frames <= 0:
        raise UnusableAudio("zero-length audio")
    return AudioInfo(path=path, frames=info.frames, sample_rate=info.samplerate)


def _is_audible(samples):
    """True when some sample of the array reaches SILENCE_PEAK."""
    return np.max(np.abs(samples)) >= SILENCE_PEAK


def check_samples(path):
    """Raises UnusableAudio when the file holds a non-finite sample (NaN, inf), a block that
    does not decode (truncated data), or only digital silence. One decoding pass, block by
    block (memory does not grow with the file)."""
    audible = False
    try:
        for index, block in enumerate(sf.blocks(path, blocksize=SILENCE_BLOCK, dtype="float32")):
            if not np.isfinite(block).all():
                raise UnusableAudio(f"non-finite sample (NaN or inf) near {index * SILENCE_BLOCK} samples")
            audible = audible or _is_audible(block)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise UnusableAudio(f"corrupt audio data ({error})") from error
    if not audible:
        raise UnusableAudio("all-silent audio")


def inspect_audio(path, min_seconds=MIN_SECONDS):
    """Header info of a usable file; raises UnusableAudio for missing, corrupt, empty, too
    short (< ``min_seconds``), non-finite or all-silent ones."""
    info = read_info(path)
    if info.frames < min_seconds * info.sample_rate:
        raise UnusableAudio(f"too short ({info.frames} samples < {min_seconds} s)")
    check_samples(path)
    return info


def load_mono(path, start=0, frames=-1):
    """Decodes ``frames`` samples from ``start`` (all by default) of ``path``, channels averaged:
    a float32 array (samples,) and the sample rate in Hz."""
    signal, sample_rate = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    return signal.mean(axis=1), sample_rate


def load_usable(path):
    """Decodes a usable file in one pass: (float32 (samples,), sample rate in Hz).

    Raises UnusableAudio for a missing, corrupt (header or data), empty, non-finite or
    all-silent file.
    """
    read_info(path)
    try:
        signal, sample_rate = load_mono(path)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise UnusableAudio(f"corrupt audio data ({error})") from error
    if not np.isfinite(signal).all():
        raise UnusableAudio("non-finite sample (NaN or inf)")
    if not _is_audible(signal):
        raise UnusableAudio("all-silent audio")
    return signal, sample_rate


def resample(signal, from_rate, to_rate):
    """Polyphase resampling (scipy) of a (samples,) signal from ``from_rate`` to ``to_rate`` Hz."""
    if from_rate == to_rate:
        return signal
    divisor = gcd(from_rate, to_rate)
    return resample_poly(signal, to_rate // divisor, from_rate // divisor).astype(np.float32)


def resampled_copy(info, sample_rate, cache_root, source_root):
    """Path of ``info.path`` at ``sample_rate`` Hz: the file itself, or a WAV cached once.

    The cached copy mirrors the file's path relative to ``source_root`` under
    ``cache_root/<sample_rate>``; it is reused while it is newer than the source.
    Returns (path, frames at ``sample_rate``).
    """
    if info.sample_rate == sample_rate:
        return info.path, info.frames
    relative = os.path.splitext(os.path.relpath(info.path, source_root))[0] + ".wav"
    cached = os.path.join(cache_root, str(sample_rate), relative)
    if not (os.path.exists(cached) and os.path.getmtime(cached) >= os.path.getmtime(info.path)):
        signal, rate = load_mono(info.path)
        write_wav(cached, resample(signal, rate, sample_rate), sample_rate)
    return cached, sf.info(cached).frames


@dataclass
class SkipReport:
    """Collects the files left out of a manifest, with the reason for each."""

    what: str
    skipped: list = field(default_factory=list)

    def add(self, path, reason):
        """Records one skipped file and logs it."""
        self.skipped.append((path, reason))
        logger.warning("Skipping %s: %s", path, reason)

    def summary(self, max_paths=5):
        """One line: how many were skipped and the first few paths with reasons."""
        if not self.skipped:
            return f"{self.what}: no file skipped"
        listed = "; ".join(f"{path} ({reason})" for path, reason in self.skipped[:max_paths])
        more = len(self.skipped) - max_paths
        tail = f"; ... and {more} more" if more > 0 else ""
        return f"{self.what}: skipped {len(self.skipped)} file(s): {listed}{tail}"
