"""prepare_data on tiny trees in the real public layouts, and on bad input."""

import os

import pandas as pd
import pytest
import soundfile as sf
from conftest import write_speechlike

from hardsep_lib.data.layouts import LayoutError
from hardsep_lib.data.prepare import PreparationError, prepare_data

WSJ_MIXTURES = {
    "tr": ["01aa010b_0.97482_209a010p_-0.97482", "01ba0102_1.2_20aa0101_-1.2"],
    "cv": ["011c0201_0.51_401o030c_-0.51"],
    "tt": ["050a0501_1.7783_442o030z_-1.7783"],
}
LIBRI_MIXTURES = {
    "train-360": ["103-1240-0000_1034-121119-0000", "1040-133433-0001_1081-125237-0002"],
    "dev": ["1272-128104-0000_2428-83705-0001"],
    "test": ["1089-134686-0000_121-121726-0000"],
}


def build_wsj0_2mix(root, seconds=1.0):
    """A WSJ0-2mix ``2speakers/wav8k/min`` tree; returns the data folder."""
    data_folder = os.path.join(root, "2speakers", "wav8k", "min")
    for split, names in WSJ_MIXTURES.items():
        for index, name in enumerate(names):
            for seed, sub in enumerate(("mix", "s1", "s2")):
                write_speechlike(os.path.join(data_folder, split, sub, name + ".wav"), seconds + 0.25 * index, seed=seed)
    return data_folder


def build_wsj0_si_tr_s(root):
    """A WSJ0 ``si_tr_s/<spk>/<utt>.wav`` tree with 2 speakers x 2 utterances."""
    folder = os.path.join(root, "si_tr_s")
    for spk in ("01a", "01b"):
        for index in range(2):
            write_speechlike(os.path.join(folder, spk, f"{spk}c010{index}.wav"), 0.5 + index, freq=120 + index)
    return folder


def build_libri2mix(root, sample_rate=8000):
    """A Libri2Mix ``wav8k/min`` tree with its metadata CSVs; returns the data folder."""
    data_folder = os.path.join(root, "Libri2Mix", f"wav{sample_rate // 1000}k", "min")
    os.makedirs(os.path.join(data_folder, "metadata"))
    for part, names in LIBRI_MIXTURES.items():
        rows = []
        for name in names:
            for sub in ("mix_clean", "s1", "s2"):
                write_speechlike(os.path.join(data_folder, part, sub, name + ".wav"), 0.75, sample_rate)
            rows.append({"mixture_ID": name, "mixture_path": f"/gen/{part}/mix_clean/{name}.wav",
                         "source_1_path": f"/gen/{part}/s1/{name}.wav", "source_2_path": f"/gen/{part}/s2/{name}.wav",
                         "length": int(0.75 * sample_rate)})
        pd.DataFrame(rows).to_csv(os.path.join(data_folder, "metadata", f"mixture_{part}_mix_clean.csv"), index=False)
    return data_folder


def build_librispeech(root):
    """A LibriSpeech ``train-clean-100/<spk>/<chapter>/<spk>-<chapter>-<n>.flac`` tree at 16 kHz."""
    folder = os.path.join(root, "LibriSpeech", "train-clean-100")
    for spk, chapter in (("103", "1240"), ("1034", "121119")):
        for index in range(2):
            name = f"{spk}-{chapter}-{index:04d}.flac"
            write_speechlike(os.path.join(folder, spk, chapter, name), 1.0, 16000, fmt="FLAC")
    return folder


def read(save_folder, name):
    return pd.read_csv(os.path.join(save_folder, name), dtype={"s1_spk": str, "s2_spk": str, "spk_id": str})


def test_wsj0_2mix_manifests(tmp_path):
    data_folder = build_wsj0_2mix(str(tmp_path))
    dm_folder = build_wsj0_si_tr_s(str(tmp_path))
    save = str(tmp_path / "prep")
    prepare_data("wsj0-2mix", data_folder, save, dm_folder=dm_folder)
    train = read(save, "train.csv")
    assert list(train.columns) == ["ID", "duration", "mix_wav", "s1_wav", "s2_wav", "s1_spk", "s2_spk", "s1_utt", "s2_utt"]
    assert train["ID"].tolist() == WSJ_MIXTURES["tr"]
    assert train["s1_spk"].tolist() == ["01a", "01b"] and train["s2_spk"].tolist() == ["209", "20a"]
    assert train["s1_utt"].tolist() == ["01aa010b", "01ba0102"]
    assert train["duration"].tolist() == [1.0, 1.25]
    assert train["s2_wav"][0] == os.path.join(data_folder, "tr", "s2", WSJ_MIXTURES["tr"][0] + ".wav")
    assert len(read(save, "valid.csv")) == 1 and len(read(save, "test.csv")) == 1
    sources = read(save, "train_sources.csv")
    assert list(sources.columns) == ["ID", "spk_id", "wav", "duration", "sample_rate"]
    assert sources["spk_id"].tolist() == ["01a", "01a", "01b", "01b"]
    assert sources["duration"].tolist() == [0.5, 1.5, 0.5, 1.5]
    assert sources["wav"][0] == os.path.join(dm_folder, "01a", "01ac0100.wav")


def test_wsj0_2mix_without_dm_folder_uses_training_sources(tmp_path):
    data_folder = build_wsj0_2mix(str(tmp_path))
    save = str(tmp_path / "prep")
    prepare_data("wsj0-2mix", data_folder, save)
    sources = read(save, "train_sources.csv")
    assert sorted(sources["ID"]) == ["01aa010b", "01ba0102", "209a010p", "20aa0101"]
    assert sorted(sources["spk_id"]) == ["01a", "01b", "209", "20a"]


def test_librimix_manifests_resample_librispeech_once(tmp_path):
    data_folder = build_libri2mix(str(tmp_path))
    dm_folder = build_librispeech(str(tmp_path))
    save = str(tmp_path / "prep")
    prepare_data("librimix", data_folder, save, dm_folder=dm_folder)
    train = read(save, "train.csv")
    assert train["ID"].tolist() == LIBRI_MIXTURES["train-360"]
    assert train["s1_spk"].tolist() == ["103", "1040"] and train["s2_spk"].tolist() == ["1034", "1081"]
    assert train["mix_wav"][0] == os.path.join(data_folder, "train-360", "mix_clean", LIBRI_MIXTURES["train-360"][0] + ".wav")
    assert read(save, "valid.csv")["s2_utt"].tolist() == ["2428-83705-0001"]
    sources = read(save, "train_sources.csv")
    assert sources["ID"].tolist() == ["103-1240-0000", "103-1240-0001", "1034-121119-0000", "1034-121119-0001"]
    assert sources["duration"].tolist() == [1.0] * 4 and set(sources["sample_rate"]) == {8000}
    cached = sources["wav"][0]
    assert cached == os.path.join(save, "resampled", "8000", "103", "1240", "103-1240-0000.wav")
    assert sf.info(cached).samplerate == 8000
    mtime = os.path.getmtime(cached)
    os.remove(os.path.join(save, "prepare_options.json"))
    prepare_data("librimix", data_folder, save, dm_folder=dm_folder)
    assert os.path.getmtime(cached) == mtime  # resampled once, reused


def test_corrupt_silent_empty_and_missing_files_are_reported_and_skipped(tmp_path, caplog):
    data_folder = build_wsj0_2mix(str(tmp_path))
    dm_folder = build_wsj0_si_tr_s(str(tmp_path))
    corrupt = os.path.join(dm_folder, "01a", "01ac0199.wav")
    with open(corrupt, "wb") as handle:
        handle.write(b"RIFF\x00\x00garbage-not-audio")
    silent = os.path.join(dm_folder, "01b", "01bc0199.wav")
    sf.write(silent, [0.0] * 4000, 8000)
    empty = os.path.join(dm_folder, "01b", "01bc0198.wav")
    sf.write(empty, [], 8000)
    os.remove(os.path.join(data_folder, "tr", "s2", WSJ_MIXTURES["tr"][1] + ".wav"))
    save = str(tmp_path / "prep")
    prepare_data("wsj0-2mix", data_folder, save, dm_folder=dm_folder)
    sources = read(save, "train_sources.csv")
    assert sources["ID"].tolist() == ["01ac0100", "01ac0101", "01bc0100", "01bc0101"]
    assert read(save, "train.csv")["ID"].tolist() == WSJ_MIXTURES["tr"][:1]
    assert "skipped 3 file(s)" in caplog.text and corrupt in caplog.text
    assert f"{silent} (all-silent audio)" in caplog.text and f"{empty} (zero-length audio)" in caplog.text
    assert "skipped 1 file(s)" in caplog.text and "missing file" in caplog.text
    assert not [name for name in os.listdir(save) if name.startswith(".tmp_")]


def test_duplicate_ids_are_reported(tmp_path, caplog):
    dm_folder = build_wsj0_si_tr_s(str(tmp_path))
    duplicate = write_speechlike(os.path.join(dm_folder, "01b", "more", "01ac0100.wav"), 0.5)
    data_folder = build_wsj0_2mix(str(tmp_path))
    prepare_data("wsj0-2mix", data_folder, str(tmp_path / "prep"), dm_folder=dm_folder)
    assert f"{duplicate} (duplicate ID 01ac0100" in caplog.text


def test_missing_empty_and_mismatched_folders_raise_clear_errors(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        prepare_data("wsj0-2mix", str(tmp_path / "nope"), str(tmp_path / "prep"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(LayoutError, match="is empty"):
        prepare_data("librimix", str(tmp_path / "empty"), str(tmp_path / "prep"))
    libri = build_libri2mix(str(tmp_path))
    with pytest.raises(LayoutError, match="not a WSJ0-2mix folder"):
        prepare_data("wsj0-2mix", libri, str(tmp_path / "prep"))
    with pytest.raises(LayoutError, match="not a Libri2Mix folder"):
        prepare_data("librimix", build_wsj0_2mix(str(tmp_path)), str(tmp_path / "prep"))
    with pytest.raises(PreparationError, match="unknown corpus"):
        prepare_data("timit", libri, str(tmp_path / "prep"))
    assert not os.path.exists(tmp_path / "prep" / "train.csv")


def test_folder_corpus_needs_enough_speakers(tmp_path):
    for spk in ("a", "b", "c"):
        write_speechlike(str(tmp_path / "tree" / spk / "u1.wav"), 0.5)
    with pytest.raises(PreparationError, match="too few for speaker-disjoint"):
        prepare_data("folder", str(tmp_path / "tree"), str(tmp_path / "prep"))


def test_synth_corpus_is_deterministic_and_speaker_disjoint(synth_prepared, tmp_path):
    data_folder, save = synth_prepared
    speakers = pd.read_csv(os.path.join(data_folder, "speakers.csv"))
    assert len(speakers) >= 40 and set(speakers["gender"]) == {"M", "F"}
    split_speakers = {}
    for split in ("train", "valid", "test"):
        frame = read(save, f"{split}.csv")
        assert (frame["s1_spk"] != frame["s2_spk"]).all()
        split_speakers[split] = set(frame["s1_spk"]) | set(frame["s2_spk"])
        for row in frame.head(3).itertuples():
            assert sf.info(row.mix_wav).frames == round(row.duration * 8000)
    assert not split_speakers["train"] & split_speakers["valid"]
    assert not split_speakers["train"] & split_speakers["test"]
    assert not split_speakers["valid"] & split_speakers["test"]
    assert set(read(save, "train_sources.csv")["spk_id"]) >= split_speakers["train"]
    rerun = str(tmp_path / "rerun")
    import shutil

    shutil.copytree(save, rerun)
    for name in os.listdir(rerun):
        if name.endswith(".csv") or name == "mixtures":
            shutil.rmtree(os.path.join(rerun, name)) if name == "mixtures" else os.remove(os.path.join(rerun, name))
    prepare_data("synth", data_folder, rerun, seed=7, n_mixtures=(120, 30, 30))
    for name in ("train.csv", "valid.csv", "test.csv", "train_sources.csv"):
        original = open(os.path.join(save, name)).read().replace(save, "<save>")
        again = open(os.path.join(rerun, name)).read().replace(rerun, "<save>")
        assert original == again, name


def test_folder_tree_manifests(tmp_path):
    root = tmp_path / "tree"
    for index in range(8):
        speaker = f"speaker{index}"
        write_speechlike(str(root / speaker / "session1" / "001.flac"), 1.0, 16000, fmt="FLAC", seed=index)
        write_speechlike(str(root / speaker / f"{speaker}-002.wav"), 0.5, 8000, freq=120 + 10 * index)
    save = str(tmp_path / "prep")
    prepare_data("folder", str(root), save, seed=3, n_mixtures=(6, 3, 3), held_out_fraction=0.25)
    sources = read(save, "train_sources.csv")
    train_speakers = sorted(sources["spk_id"].unique())
    assert len(train_speakers) == 4 and len(sources) == 8
    first = train_speakers[0]
    assert sources[sources["spk_id"] == first]["ID"].tolist() == [f"{first}_001", f"{first}-002"]
    assert sorted(sources["duration"].unique()) == [0.5, 1.0] and set(sources["sample_rate"]) == {8000}
    for split, count in (("train", 6), ("valid", 3), ("test", 3)):
        frame = read(save, f"{split}.csv")
        assert len(frame) == count
        speakers = set(frame["s1_spk"]) | set(frame["s2_spk"])
        assert (speakers <= set(train_speakers)) == (split == "train")
        assert all(path.startswith(os.path.join(save, "mixtures", split, "mix")) for path in frame["mix_wav"])
        assert (frame["duration"] <= 1.0).all()
