"""Dynamic mixing with hard-pair re-sampling on a small real corpus."""

import numpy as np
import pandas as pd
import pytest

from hardsep_lib.data.dynamic_mixing import (
    DynamicMixingDataset,
    HardPairError,
    PairSampler,
    load_hard_partners,
)


def pairs_csv(tmp_path, rows, columns=("spk1", "spk2", "is_hard")):
    path = str(tmp_path / "pairs.csv")
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_hard_fraction_matches_hard_ratio_and_partners_are_hard():
    speakers_of_utterances = np.repeat(np.arange(10), 5)
    partners = {0: np.array([1]), 1: np.array([0]), 4: np.array([5, 6]), 5: np.array([4]), 6: np.array([4])}
    sampler = PairSampler(speakers_of_utterances, partners, hard_ratio=0.3)
    rng = np.random.default_rng(3)
    draws = [sampler.draw(rng) for _ in range(4000)]
    hard = np.array([flag for _, _, flag in draws])
    assert abs(hard.mean() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / 4000)
    for first, second, flag in draws:
        assert first != second
        if flag:
            assert second in partners[first]
    again = [PairSampler(speakers_of_utterances, partners, 0.3).draw(rng2) for rng2 in [np.random.default_rng(3)] for _ in range(50)]
    assert again == draws[:50]


def test_plain_dm_draws_speakers_by_utterance_count():
    speakers_of_utterances = np.array([0] * 30 + [1] * 10 + [2] * 10)
    sampler = PairSampler(speakers_of_utterances)
    rng = np.random.default_rng(0)
    firsts = np.array([sampler.draw(rng)[0] for _ in range(4000)])
    assert abs(np.mean(firsts == 0) - 0.6) < 0.03


def test_hard_draws_take_partners_from_the_anchors_own_list(tmp_path):
    # b is among a's closest partners, but a is not among b's (b's closest is c): the
    # symmetric OR rule would give b the partners {a, c}; the per-anchor rule gives {c}.
    columns = ("spk1", "spk2", "hard_for_spk1", "hard_for_spk2", "is_hard")
    rows = [("a", "b", True, False, True), ("a", "c", False, False, False), ("b", "c", True, True, True)]
    partners = load_hard_partners(pairs_csv(tmp_path, rows, columns), ["a", "b", "c"])
    assert {k: v.tolist() for k, v in partners.items()} == {0: [1], 1: [2], 2: [1]}
    sampler = PairSampler(np.repeat(np.arange(3), 4), partners, hard_ratio=1.0)
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(3000)]
    assert all(partner in partners[anchor] for anchor, partner, _ in draws)
    assert not any(anchor == 1 and partner == 0 for anchor, partner, _ in draws)  # the OR rule would draw (b, a)
    shares = np.bincount([anchor for anchor, _, _ in draws], minlength=3) / len(draws)
    assert np.allclose(shares, 1 / 3, atol=0.04)  # anchors by utterance count: no hubs
    assert sampler.is_hard_pair(0, 1) and sampler.is_hard_pair(1, 0) and not sampler.is_hard_pair(0, 2)


def test_pair_csv_checks(tmp_path, caplog):
    speakers = ["a", "b", "c"]
    partners = load_hard_partners(pairs_csv(tmp_path, [("a", "b", True), ("a", "c", False), ("a", "zz", True)]), speakers)
    assert {k: v.tolist() for k, v in partners.items()} == {0: [1], 1: [0]}
    assert "1 pair(s) name 1 speaker(s) absent from the training sources (e.g. zz)" in caplog.text
    assert "read symmetrically from is_hard" in caplog.text  # an old CSV still drives the sampler
    with pytest.raises(HardPairError, match="no hard pair"):
        load_hard_partners(pairs_csv(tmp_path, [("a", "b", False)]), speakers)
    with pytest.raises(HardPairError, match="cannot read"):
        load_hard_partners(str(tmp_path / "missing.csv"), speakers)


def test_dataset_items_are_reproducible_cropped_and_differ_by_index(synth_prepared):
    _, save = synth_prepared
    sources = pd.read_csv(f"{save}/train_sources.csv", dtype={"spk_id": str})
    dataset = DynamicMixingDataset(sources, epoch_size=20, segment_samples=8000, seed=5)
    first, again = dataset[3], DynamicMixingDataset(sources, 20, 8000, seed=5)[3]
    assert first["mix_sig"].shape == first["s1_sig"].shape == (8000,)  # every item exactly one crop long
    np.testing.assert_array_equal(first["mix_sig"].numpy(), again["mix_sig"].numpy())
    np.testing.assert_allclose((first["s1_sig"] + first["s2_sig"]).numpy(), first["mix_sig"].numpy(), atol=1e-6)
    assert not np.array_equal(dataset[4]["mix_sig"].numpy()[:100], first["mix_sig"].numpy()[:100])
    dataset.set_epoch(1)
    assert not np.array_equal(dataset[3]["mix_sig"].numpy()[:100], first["mix_sig"].numpy()[:100])


def test_dataset_hard_ratio_with_a_mined_csv(synth_prepared, tmp_path):
    _, save = synth_prepared
    sources = pd.read_csv(f"{save}/train_sources.csv", dtype={"spk_id": str})
    speakers = sorted(sources["spk_id"].unique())
    rows = [(a, b, (i + j) % 3 == 0) for i, a in enumerate(speakers) for j, b in enumerate(speakers) if i < j]
    dataset = DynamicMixingDataset(sources, 2000, 8000, seed=1, hard_pairs_csv=pairs_csv(tmp_path, rows), hard_ratio=0.8)
    hard = np.mean([dataset.draw(index)[4] for index in range(2000)])
    assert abs(hard - 0.8) < 3 * np.sqrt(0.8 * 0.2 / 2000)
    with pytest.raises(HardPairError, match="at least 2 speakers"):
        DynamicMixingDataset(sources[sources["spk_id"] == speakers[0]], 10, 8000)


def test_a_mixtures_training_loss_does_not_depend_on_its_batch_partners(synth_prepared, tmp_path):
    """Items are cut to one length, so a batch holds no padding: the loss of a mixture is the
    same alone and beside partners drawn from longer utterances (DM and fixed mixtures)."""
    import speechbrain as sb
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from hardsep_lib.data.dataio import FixedMixtureSegments
    from hardsep_lib.training.brain import Separation

    _, save = synth_prepared
    with open("hparams/sepformer_tiny.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": str(tmp_path / "out")})
    brain = Separation(modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"})
    sources = pd.read_csv(f"{save}/train_sources.csv", dtype={"spk_id": str})
    fixed = FixedMixtureSegments(pd.read_csv(f"{save}/train.csv", dtype={"ID": str}), 4000, 8000, seed=2)
    for dataset in (DynamicMixingDataset(sources, 50, 4000, seed=2), fixed):
        items = [dataset[i] for i in range(6)]
        lengths = {len(item["mix_sig"]) for item in items}
        assert lengths == {4000}
        with torch.no_grad():
            alone = brain.mixture_losses(brain.compute_forward(sb.dataio.batch.PaddedBatch(items[:1]), sb.Stage.TRAIN))
            batched = brain.mixture_losses(brain.compute_forward(sb.dataio.batch.PaddedBatch(items), sb.Stage.TRAIN))
        torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)
    frames = np.round(sources["duration"] * sources["sample_rate"]).to_numpy()
    assert (frames > 4000).any() and len(set(frames)) > 1  # partners came from utterances of other lengths
