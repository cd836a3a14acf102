"""The speaker-pair table in blocks of anchors, written as it is computed (VoxCeleb scale).

``pairs.pair_table`` builds the whole n x n problem at once; here memory is bounded by a
block of anchors (plus one n x n boolean membership matrix, n^2 bytes: 36 MB at 6,000
speakers, 400 MB at 20,000):

1. Reference distributions of the pair distances (pitch in semitones, cosine, and the rule's
   criterion distance), used for the global percentile ranks (``hardness``, and the
   ``combined`` criterion): *exact* (every pair) up to ``EXACT_PAIRS`` (5 M) pairs, else a
   seeded uniform sample of ``SAMPLE_PAIRS`` (1 M) pairs (rank error about 1/sqrt(1e6) = 0.1%).
2. Each anchor's closest ceil(P_M (n - 1)) partners from its full row of distances (ties
   broken by partner index, as ``pairs._closest``), a block of anchors at a time.
3. Rows for the pairs (a, b), a < b, of each block: distances, hardness, ``hard_for_spk1`` =
   b among a's partners, ``hard_for_spk2`` = a among b's, ``is_hard``; all of them
   (``pairs_output="all"``) or only the rows hard for at least one side (``"hard"``: what
   the DM sampler needs). Floats are written with 6 decimals by pyarrow's CSV writer.

The sorted reference distributions (sampled to at most ``REFERENCE_SIZE`` values) are saved
next to the CSV (``<pairs>.reference.npz``) so that test mixtures can be placed on the
training rule's scale whichever rows the CSV holds.
"""

import logging
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from hardsep_lib.io_utils import atomic_path
from hardsep_lib.mining.pairs import (
    PAIR_COLUMNS,
    _closest,
    mid_rank,
    semitones,
    threshold_hard,
)

logger = logging.getLogger(__name__)

EXACT_PAIRS = 5_000_000  # up to this many pairs the percentile ranks use every pair
SAMPLE_PAIRS = 1_000_000  # above, a seeded sample of this many pairs (rank error ~ 1/sqrt = 0.1%)
REFERENCE_SIZE = 1_000_000  # values per distribution kept in the .reference.npz
AUTO_ALL_MAX_SPEAKERS = 3000  # pairs_output "auto": all rows up to here (4.5 M rows), hard rows above
DECIMALS = 6
BLOCK_ANCHORS = 256
PAIR_SCHEMA = pa.schema([(name, pa.string() if name in ("spk1", "spk2") else pa.bool_() if "hard_" in name
                          or name == "is_hard" else pa.float64()) for name in PAIR_COLUMNS])


def reference_path(pairs_csv):
    """``pairs.csv`` -> ``pairs.reference.npz``."""
    return pairs_csv[:-4] + ".reference.npz" if pairs_csv.endswith(".csv") else pairs_csv + ".reference.npz"


class PairStream:
    """The pair table of ``speakers`` (spk_id, f0_median_hz) and unit ``embeddings`` (n, dim)
    under ``rule``, computed block by block (see the module docstring)."""

    def __init__(self, speakers, embeddings, rule, block_anchors=BLOCK_ANCHORS, seed=0):
        self.ids = speakers["spk_id"].astype(str).to_numpy()
        self.f0 = speakers["f0_median_hz"].to_numpy(dtype=np.float64)
        self.embeddings = embeddings.astype(np.float64)
        self.rule = rule
        self.n = len(self.f0)
        self.n_pairs = self.n * (self.n - 1) // 2
        self.block = block_anchors
        self.exact = self.n_pairs <= EXACT_PAIRS
        self._references(np.random.default_rng(seed))
        self.member = self._memberships() if rule.kind == "per_anchor" else None

    def _blocks(self):
        return [(start, min(self.n, start + self.block)) for start in range(0, self.n, self.block)]

    def _rows(self, start, stop):
        """Full distance rows (stop - start, n) of anchors [start, stop): pitch (semitones), cosine."""
        pitch = semitones(self.f0[start:stop, None], self.f0[None, :])
        cos = 1.0 - self.embeddings[start:stop] @ self.embeddings.T
        return pitch, cos

    def _upper(self, start, stop):
        """(row in block, partner) index arrays of the pairs (a, b), a < b, of anchors [start, stop)."""
        return np.nonzero(np.arange(start, stop)[:, None] < np.arange(self.n)[None, :])

    def _references(self, rng):
        """Sorted pitch, cosine and criterion distances of every pair (exact) or of a sample."""
        if self.exact:
            parts = [[], []]
            for start, stop in self._blocks():
                pitch, cos = self._rows(start, stop)
                upper = self._upper(start, stop)
                parts[0].append(pitch[upper])
                parts[1].append(cos[upper])
            pitch, cos = (np.concatenate(part) for part in parts)
        else:
            first = rng.integers(self.n, size=SAMPLE_PAIRS)
            second = (first + 1 + rng.integers(self.n - 1, size=SAMPLE_PAIRS)) % self.n  # a distinct partner
            pitch = semitones(self.f0[first], self.f0[second])
            cos = np.concatenate([  # in chunks: 1 M pairs x 256 dims at once would take 2 GB
                1.0 - np.einsum("ij,ij->i", self.embeddings[first[i:i + 100_000]], self.embeddings[second[i:i + 100_000]])
                for i in range(0, SAMPLE_PAIRS, 100_000)])
        self.pitch_reference, self.cos_reference = np.sort(pitch), np.sort(cos)
        self.criterion_reference = np.sort(self.distance(pitch, cos))

    def distance(self, pitch, cos):
        """The rule's criterion distance; ``combined`` uses the reference percentile ranks."""
        if self.rule.criterion == "pitch":
            return pitch
        if self.rule.criterion == "embedding":
            return cos
        return (mid_rank(self.pitch_reference, pitch) + mid_rank(self.cos_reference, cos)) / 2.0

    def _memberships(self):
        """(n, n) bool: member[a, b] = b is among anchor a's closest partners."""
        k = self.rule.partners_per_anchor(self.n)
        member = np.zeros((self.n, self.n), dtype=bool)
        for start, stop in self._blocks():
            distance = self.distance(*self._rows(start, stop))
            distance[np.arange(stop - start), np.arange(start, stop)] = np.inf
            member[start:stop] = _closest(distance, k)
        return member

    def hardness_threshold(self):
        """The sidecar's ``hardness_threshold`` (the lowest hardness the rule's share of hard
        pairs covers), from the hardness of the reference distribution."""
        share = self.n_hard / self.n_pairs
        if share == 0:
            return math.inf
        hardness = 1.0 - mid_rank(self.criterion_reference, self.criterion_reference)
        return float(np.quantile(hardness, 1.0 - share))

    def _block_columns(self, start, stop, only_hard):
        """The pairs (a, b), a < b, of anchors [start, stop) as numpy columns; ``spk1``/``spk2``
        hold speaker indices. With ``only_hard``, only the rows hard for either side (filtered
        before the costlier columns are computed)."""
        pitch, cos = self._rows(start, stop)
        anchors, partners = self._upper(start, stop)
        pitch, cos = pitch[anchors, partners], cos[anchors, partners]
        anchors += start
        if self.member is not None:
            for_first, for_second = self.member[anchors, partners], self.member[partners, anchors]
        else:
            for_first = for_second = threshold_hard(pd.DataFrame({"pitch_diff_hz": np.abs(self.f0[anchors] - self.f0[partners]),
                                                                  "cos_dist": cos}),
                                                    self.rule.max_pitch_diff_hz, self.rule.max_cos_dist)
        hard = for_first | for_second
        self.n_hard += int(hard.sum())
        if only_hard:
            anchors, partners, pitch, cos, for_first, for_second, hard = (
                column[hard] for column in (anchors, partners, pitch, cos, for_first, for_second, hard))
        return {"spk1": anchors, "spk2": partners, "f0_1": self.f0[anchors], "f0_2": self.f0[partners],
                "pitch_diff_hz": np.abs(self.f0[anchors] - self.f0[partners]), "pitch_diff_semitones": pitch,
                "cos_dist": cos, "hardness": 1.0 - mid_rank(self.criterion_reference, self.distance(pitch, cos)),
                "hard_for_spk1": for_first, "hard_for_spk2": for_second, "is_hard": hard}

    def tables(self, only_hard=False):
        """Yields the table a block of anchors at a time (PAIR_COLUMNS, rows in (spk1, spk2) order)."""
        self.n_hard = 0
        for start, stop in self._blocks():
            columns = self._block_columns(start, stop, only_hard)
            columns["spk1"], columns["spk2"] = self.ids[columns["spk1"]], self.ids[columns["spk2"]]
            yield pd.DataFrame(columns)[PAIR_COLUMNS]

    def write(self, path, pairs_output="auto"):
        """Writes the CSV (atomically) and the reference .npz; returns (rows written, output kind)."""
        if pairs_output == "auto":
            pairs_output = "all" if self.n <= AUTO_ALL_MAX_SPEAKERS else "hard"
            logger.info("pairs_output auto: %s rows (%d speakers; all rows up to %d speakers)", pairs_output,
                        self.n, AUTO_ALL_MAX_SPEAKERS)
        self.n_hard, written = 0, 0
        ids = pa.array(self.ids)
        with atomic_path(path) as tmp_path:
            with pa_csv.CSVWriter(tmp_path, PAIR_SCHEMA) as writer:
                for start, stop in self._blocks():
                    columns = self._block_columns(start, stop, pairs_output == "hard")
                    arrays = [ids.take(pa.array(columns[name])) if name in ("spk1", "spk2")
                              else pa.array(np.round(columns[name], DECIMALS)) if columns[name].dtype.kind == "f"
                              else pa.array(columns[name]) for name in PAIR_COLUMNS]
                    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=PAIR_SCHEMA))
                    written += len(columns["spk1"])
        self._write_reference(reference_path(path))
        return written, pairs_output

    def _write_reference(self, path):
        def thin(values):
            if len(values) <= REFERENCE_SIZE:
                return values
            return values[np.linspace(0, len(values) - 1, REFERENCE_SIZE).round().astype(np.int64)]

        with atomic_path(path) as tmp_path:
            with open(tmp_path, "wb") as handle:
                np.savez(handle, pitch_diff_semitones=thin(self.pitch_reference), cos_dist=thin(self.cos_reference),
                         criterion=thin(self.criterion_reference))
