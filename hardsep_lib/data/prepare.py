"""prepare_data(): SpeechBrain CSV manifests for WSJ0-2mix, Libri2Mix, a speaker folder tree,
or the synthetic espeak-ng corpus.

Writes into ``save_folder``:
    train.csv, valid.csv, test.csv   fixed mixtures: ID, duration, mix_wav, s1_wav, s2_wav,
                                     s1_spk, s2_spk, s1_utt, s2_utt (duration in seconds)
    train_sources.csv                single-speaker utterances for dynamic mixing:
                                     ID, spk_id, wav, duration, sample_rate
    prepare_options.json             the options, so an identical call is skipped
Every file is written atomically; unusable audio is skipped and listed in a logged summary.
"""

import json
import logging
import os

import numpy as np
import pandas as pd

from hardsep_lib.data import layouts
from hardsep_lib.data.audio import SkipReport, UnusableAudio, inspect_audio, load_mono, resampled_copy
from hardsep_lib.io_utils import write_csv, write_json, write_wav
from hardsep_lib.data.mixing import draw_levels_db, mix_pair
from hardsep_lib.errors import HardsepError

logger = logging.getLogger(__name__)

CORPORA = ("wsj0-2mix", "librimix", "folder", "synth")
SPLITS = ("train", "valid", "test")
MIXTURE_COLUMNS = ["ID", "duration", "mix_wav", "s1_wav", "s2_wav", "s1_spk", "s2_spk", "s1_utt", "s2_utt"]
SOURCE_COLUMNS = ["ID", "spk_id", "wav", "duration", "sample_rate"]
# Fewest speakers a held-out (valid or test) split of a folder corpus may have.
MIN_HELD_OUT_SPEAKERS = 2


class PreparationError(HardsepError):
    """Input that cannot give a usable manifest (the message names the file or folder)."""


def prepare_data(
    corpus,
    data_folder,
    save_folder,
    dm_folder=None,
    sample_rate=8000,
    seed=1234,
    n_mixtures=(1000, 200, 300),
    held_out_fraction=0.15,
    n_speakers=48,
):
    """Writes the manifests of ``corpus`` into ``save_folder`` (see the module docstring).

    Arguments
    ---------
    corpus : str
        One of CORPORA.
    data_folder : str
        The corpus root, as laid out by its public release (see layouts.py). For ``synth``,
        the folder the generated corpus is written to.
    save_folder : str
        Where the CSVs, the resampling cache and generated mixtures go.
    dm_folder : str, optional
        Single-speaker source tree for dynamic mixing (WSJ0 ``si_tr_s`` or LibriSpeech
        ``train-clean-*``). Without it, WSJ0-2mix/Libri2Mix take the s1/s2 files of their
        training mixtures as sources.
    sample_rate : int
        Target rate in Hz; other rates are resampled once into ``save_folder/resampled``.
    seed : int
        Seeds speaker splits and generated mixtures (folder and synth corpora).
    n_mixtures : tuple of int
        Generated (train, valid, test) mixtures for the folder and synth corpora.
    held_out_fraction : float
        Share of speakers held out for each of valid and test (folder and synth corpora).
    n_speakers : int
        Speakers of the generated synth corpus (a multiple of 6, 6-132); ignored otherwise.
    """
    if corpus not in CORPORA:
        raise PreparationError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    if corpus in ("folder", "synth") and (len(n_mixtures) != 3 or min(n_mixtures) < 1):
        raise PreparationError(f"--n_mixtures needs three counts >= 1 (train valid test), got {list(n_mixtures)}")
    if not 0.0 < held_out_fraction < 0.5:
        raise PreparationError(f"--held_out_fraction must be in (0, 0.5), got {held_out_fraction}")
    options = {
        "corpus": corpus,
        "data_folder": os.path.abspath(data_folder),
        "dm_folder": os.path.abspath(dm_folder) if dm_folder else None,
        "sample_rate": sample_rate,
        "seed": seed,
        "n_mixtures": list(n_mixtures),
        "held_out_fraction": held_out_fraction,
    }
    if corpus == "synth":
        options["n_speakers"] = n_speakers
    if corpus != "synth":  # what the skip decision depends on: a changed input is prepared again
        options["inputs"] = {name: _fingerprint(folder) for name, folder in
                             (("data_folder", data_folder), ("dm_folder", dm_folder)) if folder}
    if _already_prepared(save_folder, options):
        logger.info("Manifests in %s match these options; skipping preparation.", save_folder)
        return
    if corpus == "synth":
        from hardsep_lib.data.synth_corpus import generate_corpus

        generate_corpus(data_folder, seed=seed, n_speakers=n_speakers)
    context = _Context(save_folder, sample_rate, np.random.default_rng(seed))
    if corpus in ("wsj0-2mix", "librimix"):
        manifests = _prepare_public_mixtures(corpus, data_folder, dm_folder, context)
    else:
        manifests = _prepare_speaker_folder(data_folder, n_mixtures, held_out_fraction, context)
    _check_test_speakers_unseen(manifests)
    for name, frame in manifests.items():
        write_csv(frame, os.path.join(save_folder, f"{name}.csv"))
        logger.info("Wrote %s.csv: %d rows", name, len(frame))
    for report in context.reports:
        logger.log(logging.WARNING if report.skipped else logging.INFO, report.summary())
    write_json(options, os.path.join(save_folder, "prepare_options.json"))


def _fingerprint(folder):
    """[number of files, total bytes, newest mtime in ns] of a folder tree (stat only, no reads)."""
    count = size = newest = 0
    for root, _, names in os.walk(folder):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
    return [count, size, newest]


def _check_test_speakers_unseen(manifests):
    """Raises PreparationError when a test speaker also speaks in train.csv or the DM sources
    (WSJ0-2mix's and Libri2Mix's test speakers are unseen; a leak means mixed-up folders)."""
    test = set(manifests["test"][["s1_spk", "s2_spk"]].to_numpy().ravel())
    seen = set(manifests["train"][["s1_spk", "s2_spk"]].to_numpy().ravel()) | set(manifests["train_sources"]["spk_id"])
    leaked = sorted(test & seen)
    if leaked:
        raise PreparationError(f"{len(leaked)} test speaker(s) also appear in the training data (e.g. "
                               f"{', '.join(map(str, leaked[:5]))}): check --data_folder and --dm_folder")


class _Context:
    """What every preparation step shares: target rate, cache folder, RNG and skip reports."""

    def __init__(self, save_folder, sample_rate, rng):
        self.save_folder = save_folder
        self.sample_rate = sample_rate
        self.cache_root = os.path.join(save_folder, "resampled")
        self.rng = rng
        self.reports = []

    def report(self, what):
        """A new SkipReport, listed in the final summary."""
        report = SkipReport(what)
        self.reports.append(report)
        return report

    def usable_copy(self, path, source_root):
        """(path at the target rate, duration in s) of a usable file; raises UnusableAudio."""
        info = inspect_audio(path)
        path, frames = resampled_copy(info, self.sample_rate, self.cache_root, source_root)
        return path, frames / self.sample_rate


def _already_prepared(save_folder, options):
    """True when every manifest exists and was written with exactly these options."""
    names = [f"{split}.csv" for split in SPLITS] + ["train_sources.csv"]
    options_path = os.path.join(save_folder, "prepare_options.json")
    if not all(os.path.isfile(os.path.join(save_folder, name)) for name in names + ["prepare_options.json"]):
        return False
    with open(options_path) as handle:
        return json.load(handle) == options


def _prepare_public_mixtures(corpus, data_folder, dm_folder, context):
    """Manifests of WSJ0-2mix or Libri2Mix: their fixed mixtures plus a DM source list."""
    layouts.require_folder(data_folder, f"{corpus} data folder")
    read_split = layouts.wsj0_2mix_mixtures if corpus == "wsj0-2mix" else layouts.librimix_mixtures
    manifests = {}
    for split in SPLITS:
        records, bad_names = read_split(data_folder, split)
        report = context.report(f"{split}.csv")
        for name in bad_names:
            report.add(name, "file name does not follow the corpus naming")
        manifests[split] = _mixture_table(records, data_folder, report, context)
        if manifests[split].empty or len(report.skipped) > len(manifests[split]):
            raise PreparationError(f"{len(manifests[split])} usable {split} mixture(s) in {data_folder}, "
                                   f"fewer than skipped ones: a bad set, not a few bad files; {report.summary()}")
    if dm_folder:
        manifests["train_sources"] = _source_table(layouts.speaker_folder_sources(dm_folder), dm_folder, context)
    else:
        logger.info("No --dm_folder: the s1/s2 files of train.csv serve as the DM sources.")
        manifests["train_sources"] = _sources_from_mixtures(manifests["train"], context)
    return manifests


def _mixture_table(records, data_folder, report, context):
    """Rows of usable mixtures; a mixture with a missing/bad mix, s1 or s2 file is skipped."""
    rows, seen = [], set()
    for record in records:
        if record.mixture_id in seen:
            report.add(record.mix_wav, f"duplicate ID {record.mixture_id}")
            continue
        paths = []
        for path in (record.mix_wav, record.s1_wav, record.s2_wav):
            try:
                paths.append(context.usable_copy(path, data_folder))
            except UnusableAudio as error:
                report.add(path, str(error))
                break
        else:
            if len({duration for _, duration in paths}) > 1:  # durations at the one target rate
                report.add(record.mix_wav, "mixture and sources differ in length (" + ", ".join(
                    f"{duration:.3f} s" for _, duration in paths) + "): truncated or mismatched files")
                continue
            seen.add(record.mixture_id)
            rows.append(
                {
                    "ID": record.mixture_id,
                    "duration": paths[0][1],
                    "mix_wav": paths[0][0],
                    "s1_wav": paths[1][0],
                    "s2_wav": paths[2][0],
                    "s1_spk": record.s1_spk,
                    "s2_spk": record.s2_spk,
                    "s1_utt": record.s1_utt,
                    "s2_utt": record.s2_utt,
                }
            )
    return pd.DataFrame(rows, columns=MIXTURE_COLUMNS)


def _source_table(sources, source_root, context):
    """Rows of usable single-speaker utterances (ID, spk_id, wav, duration, sample_rate)."""
    report = context.report("train_sources.csv")
    rows, seen = [], {}
    for source in sources:
        if source.utt_id in seen:
            report.add(source.path, f"duplicate ID {source.utt_id} (first: {seen[source.utt_id]})")
            continue
        try:
            path, duration = context.usable_copy(source.path, source_root)
        except UnusableAudio as error:
            report.add(source.path, str(error))
            continue
        seen[source.utt_id] = source.path
        rows.append(
            {"ID": source.utt_id, "spk_id": source.spk_id, "wav": path, "duration": duration, "sample_rate": context.sample_rate}
        )
    table = pd.DataFrame(rows, columns=SOURCE_COLUMNS)
    if table["spk_id"].nunique() < 2:
        raise PreparationError(f"fewer than 2 speakers with usable audio under {source_root}; {report.summary()}")
    return table


def _sources_from_mixtures(train, context):
    """DM sources taken from the training mixtures' s1/s2 files, one row per utterance id."""
    rows = []
    for column in ("s1", "s2"):
        part = train[[f"{column}_utt", f"{column}_spk", f"{column}_wav", "duration"]]
        part.columns = ["ID", "spk_id", "wav", "duration"]
        rows.append(part)
    table = pd.concat(rows).drop_duplicates("ID").sort_values("ID", kind="stable")
    table["sample_rate"] = context.sample_rate
    return table[SOURCE_COLUMNS].reset_index(drop=True)


def _folder_utterances(data_folder):
    """The tree's files, with ids made unique across speakers: ``<spk>_<stem>`` unless the
    stem already starts with the speaker id (as WSJ0 and LibriSpeech names do)."""
    return [
        source
        if source.utt_id.startswith(source.spk_id)
        else layouts.SourceFile(f"{source.spk_id}_{source.utt_id}", source.spk_id, source.path)
        for source in layouts.speaker_folder_sources(data_folder)
    ]


def _prepare_speaker_folder(data_folder, n_mixtures, held_out_fraction, context):
    """Manifests of a ``<speaker>/**/*.wav`` tree: sources of the training speakers, and
    seeded fixed mixtures of speaker-disjoint train/valid/test speaker sets."""
    sources = _source_table(_folder_utterances(data_folder), data_folder, context)
    speaker_splits = split_speakers(sorted(sources["spk_id"].unique()), held_out_fraction, context.rng)
    manifests = {"train_sources": sources[sources["spk_id"].isin(speaker_splits["train"])].reset_index(drop=True)}
    for split, count in zip(SPLITS, n_mixtures):
        split_sources = sources[sources["spk_id"].isin(speaker_splits[split])]
        out_folder = os.path.join(context.save_folder, "mixtures", split)
        manifests[split] = make_fixed_mixtures(split_sources, count, out_folder, context.rng)
    return manifests


def split_speakers(speakers, held_out_fraction, rng):
    """Seeded speaker-disjoint split: {'train': [...], 'valid': [...], 'test': [...]}."""
    n_held_out = max(MIN_HELD_OUT_SPEAKERS, int(round(held_out_fraction * len(speakers))))
    if len(speakers) < 2 * n_held_out + 2:
        raise PreparationError(
            f"{len(speakers)} usable speakers are too few for speaker-disjoint train/valid/test "
            f"splits (need at least {2 * n_held_out + 2})"
        )
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    return {
        "valid": sorted(order[:n_held_out]),
        "test": sorted(order[n_held_out : 2 * n_held_out]),
        "train": sorted(order[2 * n_held_out :]),
    }


def make_fixed_mixtures(sources, count, out_folder, rng):
    """Writes ``count`` seeded two-speaker mixtures of ``sources`` to ``out_folder/{mix,s1,s2}``.

    Each mixture takes two distinct speakers uniformly, one random utterance of each, levels
    from mixing.draw_levels_db, and is cut to the shorter utterance (WSJ0-2mix "min" mode).
    Returns the manifest rows (MIXTURE_COLUMNS).
    """
    by_speaker = {spk: group.reset_index(drop=True) for spk, group in sources.groupby("spk_id", sort=True)}
    speakers = sorted(by_speaker)
    rows, used_ids = [], set()
    while len(rows) < count:
        spk1, spk2 = (speakers[i] for i in rng.choice(len(speakers), size=2, replace=False))
        utt1 = by_speaker[spk1].iloc[rng.integers(len(by_speaker[spk1]))]
        utt2 = by_speaker[spk2].iloc[rng.integers(len(by_speaker[spk2]))]
        levels = draw_levels_db(rng)
        mixture_id = f"{utt1.ID}_{levels[0]:.2f}_{utt2.ID}_{levels[1]:.2f}"
        if mixture_id in used_ids:
            continue
        used_ids.add(mixture_id)
        signals = mix_pair(load_mono(utt1.wav)[0], load_mono(utt2.wav)[0], levels)
        sample_rate = int(utt1.sample_rate)
        paths = {}
        for name, signal in zip(("mix", "s1", "s2"), signals):
            paths[name] = os.path.join(out_folder, name, mixture_id + ".wav")
            write_wav(paths[name], signal, sample_rate)
        rows.append(
            {
                "ID": mixture_id,
                "duration": len(signals[0]) / sample_rate,
                "mix_wav": paths["mix"],
                "s1_wav": paths["s1"],
                "s2_wav": paths["s2"],
                "s1_spk": spk1,
                "s2_spk": spk2,
                "s1_utt": utt1.ID,
                "s2_utt": utt2.ID,
            }
        )
    return pd.DataFrame(rows, columns=MIXTURE_COLUMNS)
