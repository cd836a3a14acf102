"""The folder layouts of the public corpora, exactly as they ship.

Each reader returns plain records; checking the audio and writing manifests is prepare.py's job.

- WSJ0-2mix: ``<data_folder>`` = ``.../2speakers/wav8k/min`` with ``{tr,cv,tt}/{mix,s1,s2}/*.wav``;
  a file is ``<utt1>_<gain1>_<utt2>_<gain2>.wav``, a WSJ0 speaker is an utterance id's first
  3 characters. Sources for DM: WSJ0 ``si_tr_s/<spk>/<utt>.wav``.
- Libri2Mix: ``<data_folder>`` = ``.../Libri2Mix/wav8k/min`` with
  ``{train-100,train-360,dev,test}/{mix_clean,s1,s2}/<utt1>_<utt2>.wav`` and
  ``metadata/mixture_<split>_mix_clean.csv``; a LibriSpeech utterance is
  ``<spk>-<chapter>-<n>``. Sources for DM: LibriSpeech ``train-clean-*/<spk>/<chapter>/*.flac``.
- folder: any ``<root>/<speaker>/**/*.{wav,flac}`` tree.
"""

import glob
import os
from dataclasses import dataclass

import pandas as pd
from hardsep_lib.errors import HardsepError

AUDIO_EXTENSIONS = (".wav", ".flac")
WSJ0_2MIX_SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}
LIBRIMIX_SPLITS = {"train": ("train-360", "train-100"), "valid": ("dev",), "test": ("test",)}


class LayoutError(HardsepError):
    """A folder that is missing, empty, or not laid out as the chosen corpus."""


@dataclass(frozen=True)
class MixtureFiles:
    """One fixed mixture of a public corpus: its id, the three files and the two sources."""

    mixture_id: str
    mix_wav: str
    s1_wav: str
    s2_wav: str
    s1_utt: str
    s2_utt: str
    s1_spk: str
    s2_spk: str


@dataclass(frozen=True)
class SourceFile:
    """One single-speaker utterance: its id, speaker and file."""

    utt_id: str
    spk_id: str
    path: str


def require_folder(path, what):
    """Raises LayoutError unless ``path`` is an existing, non-empty folder."""
    if not os.path.isdir(path):
        raise LayoutError(f"{what} does not exist: {path}")
    if not os.listdir(path):
        raise LayoutError(f"{what} is empty: {path}")


def _require_layout(expected_folder, corpus, layout):
    """Raises LayoutError unless ``expected_folder`` exists: the data folder is not ``corpus``."""
    if not os.path.isdir(expected_folder):
        raise LayoutError(f"not a {corpus} folder (expected {expected_folder}); --data_folder must be {layout}")


def _mixture_files(mixture_id, split_folder, mix_subfolder, utts, speaker_of):
    """MixtureFiles of ``<split_folder>/{<mix_subfolder>,s1,s2}/<mixture_id>.wav``."""
    name = mixture_id + ".wav"
    return MixtureFiles(
        mixture_id=mixture_id,
        mix_wav=os.path.join(split_folder, mix_subfolder, name),
        s1_wav=os.path.join(split_folder, "s1", name),
        s2_wav=os.path.join(split_folder, "s2", name),
        s1_utt=utts[0],
        s2_utt=utts[1],
        s1_spk=speaker_of(utts[0]),
        s2_spk=speaker_of(utts[1]),
    )


def wsj0_speaker(utt_id):
    """A WSJ0 speaker is the first 3 characters of the utterance id."""
    return utt_id[:3]


def _split_wsj0_name(stem):
    """``<utt1>_<gain1>_<utt2>_<gain2>`` -> (utt1, utt2); None when the name does not match."""
    parts = stem.split("_")
    if len(parts) != 4:
        return None
    return parts[0], parts[2]


def wsj0_2mix_mixtures(data_folder, split):
    """The mixtures of one WSJ0-2mix split (``train``/``valid``/``test``), sorted by id.

    Returns (records, bad_names): files whose name is not ``<utt1>_<g1>_<utt2>_<g2>.wav``.
    """
    split_folder = os.path.join(data_folder, WSJ0_2MIX_SPLITS[split])
    mix_folder = os.path.join(split_folder, "mix")
    _require_layout(mix_folder, "WSJ0-2mix", ".../2speakers/wav8k/min with tr/cv/tt/{mix,s1,s2}")
    records, bad_names = [], []
    for name in sorted(os.listdir(mix_folder)):
        stem, ext = os.path.splitext(name)
        utts = _split_wsj0_name(stem) if ext == ".wav" else None
        if utts is None:
            bad_names.append(os.path.join(mix_folder, name))
            continue
        records.append(_mixture_files(stem, split_folder, "mix", utts, wsj0_speaker))
    return records, bad_names


def librispeech_speaker(utt_id):
    """``<spk>-<chapter>-<n>`` -> ``<spk>``."""
    return utt_id.split("-")[0]


def librimix_mixtures(data_folder, split):
    """The mixtures of one Libri2Mix split, from its ``metadata/mixture_<part>_mix_clean.csv``.

    The metadata's absolute paths point at the machine that generated the corpus, so the files
    are looked up by ``mixture_ID`` under ``<data_folder>/<part>/{mix_clean,s1,s2}``.
    Returns (records, bad_names) like wsj0_2mix_mixtures.
    """
    metadata_folder = os.path.join(data_folder, "metadata")
    _require_layout(metadata_folder, "Libri2Mix", ".../Libri2Mix/wav8k/min with metadata/ and train-*/dev/test")
    records, bad_names = [], []
    for part in LIBRIMIX_SPLITS[split]:
        csv_path = os.path.join(metadata_folder, f"mixture_{part}_mix_clean.csv")
        if not os.path.isfile(csv_path):
            continue
        part_folder = os.path.join(data_folder, part)
        for mixture_id in pd.read_csv(csv_path)["mixture_ID"].astype(str):
            utts = mixture_id.split("_")
            if len(utts) != 2:
                bad_names.append(f"{csv_path}: {mixture_id}")
                continue
            records.append(_mixture_files(mixture_id, part_folder, "mix_clean", utts, librispeech_speaker))
    if not records and not bad_names:
        wanted = ", ".join(f"mixture_{part}_mix_clean.csv" for part in LIBRIMIX_SPLITS[split])
        raise LayoutError(f"no metadata for the {split} split in {metadata_folder} (wanted {wanted})")
    return records, bad_names


# Folder names of WSJ0 / LibriSpeech / WSJ0-2mix splits: found where speakers should be, they
# mean the folder given is one level too high (and other splits' speakers would leak in).
CORPUS_SPLIT_NAMES = {"si_tr_s", "si_dt_05", "si_et_05", "si_dt_20", "si_et_20", "si_tr_j", "sd_tr_s", "sd_dt_05",
                      "train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                      "test-clean", "test-other", "tr", "cv", "tt"}


def speaker_folder_sources(root):
    """Every audio file of a ``<root>/<speaker>/**/*.{wav,flac}`` tree, sorted by path.

    The speaker is the first folder under ``root``; the utterance id is the file's stem
    (WSJ0 ``si_tr_s`` and LibriSpeech ``train-clean-*`` both fit this layout).
    """
    require_folder(root, "source folder")
    split_like = sorted(name for name in os.listdir(root) if name.lower() in CORPUS_SPLIT_NAMES)
    if split_like:
        raise LayoutError(
            f"{root} holds {', '.join(split_like)}: corpus split folders, not speakers. Point it at one "
            f"split (e.g. {os.path.join(root, split_like[0])}), whose sub-folders are speakers")
    sources = []
    for speaker in sorted(os.listdir(root)):
        speaker_dir = os.path.join(root, speaker)
        if not os.path.isdir(speaker_dir):
            continue
        pattern = os.path.join(glob.escape(speaker_dir), "**", "*")
        for path in sorted(glob.glob(pattern, recursive=True)):
            if path.lower().endswith(AUDIO_EXTENSIONS):
                utt_id = os.path.splitext(os.path.basename(path))[0]
                sources.append(SourceFile(utt_id=utt_id, spk_id=speaker, path=path))
    if not sources:
        raise LayoutError(
            f"no .wav/.flac file under {root}; expected <root>/<speaker>/**/*.wav|flac"
        )
    return sources
