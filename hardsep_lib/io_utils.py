"""Atomic writes: every output goes to a temporary file next to its target, then is renamed.

A crash or a kill therefore never leaves a half-written CSV, JSON or audio file behind.
"""

import contextlib
import json
import os
import tempfile

import soundfile as sf


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path in the target's folder; renames it onto ``path`` on success.

    The file gets the permissions an ordinary ``open`` would give it (the umask applies)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=folder)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask),
    # so that shared caches and result folders stay readable by the group.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_csv(frame, path):
    """Writes a pandas DataFrame to ``path`` atomically (no index column)."""
    with atomic_path(path) as tmp_path:
        frame.to_csv(tmp_path, index=False)


def write_json(obj, path):
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=True)
            handle.write("\n")


def write_wav(path, signal, sample_rate):
    """Writes a mono float signal (samples,) as 16-bit PCM WAV atomically."""
    with atomic_path(path) as tmp_path:
        sf.write(tmp_path, signal, sample_rate, subtype="PCM_16", format="WAV")
