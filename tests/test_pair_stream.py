"""The streamed pair table equals the in-memory one, and its `hard` output drives the DM
sampler exactly as the `all` output does."""

import numpy as np
import pandas as pd
import pytest

from hardsep_lib.data.dynamic_mixing import PairSampler, load_hard_partners
from hardsep_lib.mining import pair_stream
from hardsep_lib.mining.pair_stream import PairStream
from hardsep_lib.mining.pairs import PAIR_COLUMNS, HardPairRule, pair_table

N_SPEAKERS = 300


def synthetic_speakers(n=N_SPEAKERS, seed=0):
    """Random unit 64-d embeddings and pitch medians of 80-300 Hz (a few exact duplicates: ties)."""
    rng = np.random.default_rng(seed)
    f0 = rng.uniform(80, 300, n)
    f0[10:14] = f0[9]
    embeddings = rng.standard_normal((n, 64))
    embeddings[20] = embeddings[21]
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return pd.DataFrame({"spk_id": [f"s{i:04d}" for i in range(n)], "f0_median_hz": f0}), embeddings.astype(np.float32)


RULES = [HardPairRule("pitch", 0.1), HardPairRule("embedding", 0.05), HardPairRule("combined", 0.1),
         HardPairRule("combined", max_pitch_diff_hz=10.0, max_cos_dist=0.9)]


@pytest.mark.parametrize("rule", RULES, ids=["pitch", "embedding", "combined", "thresholds"])
def test_streamed_table_equals_the_in_memory_one(rule):
    speakers, embeddings = synthetic_speakers()
    expected = pair_table(speakers, embeddings, rule)
    stream = PairStream(speakers, embeddings, rule, block_anchors=37)
    streamed = pd.concat(list(stream.tables()), ignore_index=True)[PAIR_COLUMNS]
    assert len(streamed) == len(expected) == N_SPEAKERS * (N_SPEAKERS - 1) // 2
    for column in ("spk1", "spk2", "hard_for_spk1", "hard_for_spk2", "is_hard"):
        assert (streamed[column].to_numpy() == expected[column].to_numpy()).all(), column
    for column in ("f0_1", "f0_2", "pitch_diff_hz", "pitch_diff_semitones", "cos_dist", "hardness"):
        np.testing.assert_allclose(streamed[column], expected[column], rtol=1e-9, atol=1e-12, err_msg=column)
    assert stream.n_hard == int(expected["is_hard"].sum())


def test_sampled_percentiles_are_close_and_memberships_unchanged(monkeypatch):
    speakers, embeddings = synthetic_speakers()
    exact = pd.concat(list(PairStream(speakers, embeddings, HardPairRule("pitch", 0.1)).tables()))
    monkeypatch.setattr(pair_stream, "EXACT_PAIRS", 20000)  # fewer than the 44,850 pairs: sample mode
    monkeypatch.setattr(pair_stream, "SAMPLE_PAIRS", 20000)
    sampled_stream = PairStream(speakers, embeddings, HardPairRule("pitch", 0.1))
    assert not sampled_stream.exact
    sampled = pd.concat(list(sampled_stream.tables()))
    assert (sampled["is_hard"].to_numpy() == exact["is_hard"].to_numpy()).all()
    assert np.abs(sampled["hardness"].to_numpy() - exact["hardness"].to_numpy()).max() < 0.02


def test_hard_output_drives_the_sampler_exactly_as_all(tmp_path):
    speakers, embeddings = synthetic_speakers()
    stream = PairStream(speakers, embeddings, HardPairRule("combined", 0.1))
    rows = {}
    for output in ("all", "hard"):
        path = str(tmp_path / f"pairs_{output}.csv")
        rows[output], _ = stream.write(path, output)
        table = pd.read_csv(path)
        assert list(table.columns) == PAIR_COLUMNS and table["is_hard"].dtype == bool
        if output == "hard":
            assert table["is_hard"].all()
    assert rows["all"] == N_SPEAKERS * (N_SPEAKERS - 1) // 2 > rows["hard"] == stream.n_hard
    ids = speakers["spk_id"].tolist()
    partners = {output: load_hard_partners(str(tmp_path / f"pairs_{output}.csv"), ids) for output in ("all", "hard")}
    assert partners["all"].keys() == partners["hard"].keys()
    assert all((partners["all"][key] == partners["hard"][key]).all() for key in partners["all"])
    utterance_speakers = np.repeat(np.arange(N_SPEAKERS), 3)
    draws = {output: [PairSampler(utterance_speakers, partners[output], 0.5).draw(rng)
                      for rng in [np.random.default_rng(11)] for _ in range(2000)] for output in ("all", "hard")}
    assert draws["all"] == draws["hard"]
