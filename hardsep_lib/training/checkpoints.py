"""Checkpoints that a full disk or a kill during saving left truncated are set aside, not fatal.

SpeechBrain's Checkpointer lists the folders named ``CKPT+*``; a corrupt one (an unreadable
``CKPT.yaml`` or a torch-saved file, modules, optimiser or scheduler, that torch cannot load) would make every later resume fail. Before
recovering, each checkpoint is read once (``torch.load(weights_only=True)``: tensors only,
no unpickling of arbitrary objects); a bad one is renamed ``CORRUPT+...`` (kept for
inspection, ignored by SpeechBrain) with a warning naming it, so the run resumes from the
newest intact checkpoint.
"""

import logging
import os

import torch
import yaml

logger = logging.getLogger(__name__)


def _intact(folder):
    try:
        with open(os.path.join(folder, "CKPT.yaml")) as handle:
            yaml.safe_load(handle)
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                is_torch_file = handle.read(2) == b"PK"  # torch.save writes a zip archive
            # (the epoch counter and the dataloader position are small text files)
            if name.endswith(".ckpt") and is_torch_file:
                torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read means the checkpoint cannot be recovered
        logger.warning("Checkpoint %s is unreadable (%s: %s): set aside as CORRUPT+..., resuming from the "
                       "newest intact one", folder, type(error).__name__, error)
        return False
    return True


def set_aside_corrupt_checkpoints(checkpoints_dir):
    """Renames every unreadable ``CKPT+*`` folder of ``checkpoints_dir``; returns their new paths."""
    if not os.path.isdir(checkpoints_dir):
        return []
    moved = []
    for name in sorted(os.listdir(checkpoints_dir)):
        folder = os.path.join(checkpoints_dir, name)
        if name.startswith("CKPT+") and os.path.isdir(folder) and not _intact(folder):
            target = os.path.join(checkpoints_dir, "CORRUPT+" + name[len("CKPT+"):])
            os.replace(folder, target)
            moved.append(target)
    return moved
