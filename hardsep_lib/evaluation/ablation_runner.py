"""ablation.py run: the paper's ablation rows, trained once per (training, seed), resumable.

Rows (docs/method.md and the paper's tables, plus ours):

    row                   trains with                                        selects by
    baseline              fixed training mixtures (no DM), plain loss        plain
    dm                    DM, plain loss                                     plain
    dm_wvl                the same run as dm                                 weighted
    dm_wtl                DM + WTL                                           plain
    dm_wtl_wvl            the same run as dm_wtl                             weighted
    dm_wvl_pitch          DM + hard re-sampling, pitch criterion             weighted
    dm_wvl_embedding      DM + hard re-sampling, embedding criterion         weighted
    dm_wtl_wvl_combined   DM + WTL + hard re-sampling, combined criterion    weighted

Layout: ``DIR/prep`` (manifests, pair CSVs per criterion, feature cache), ``DIR/runs/<training>/
seed<k>`` (train.py output folders: checkpoints, logs), ``DIR/<row>/seed<k>/test_results.csv``.
A row and seed is done when its test_results.csv exists (written atomically); an unfinished
training resumes from its last checkpoint (SpeechBrain's checkpointer).
"""

import dataclasses
import logging
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hyperpyyaml import load_hyperpyyaml

from hardsep_lib.data.prepare import prepare_data
from hardsep_lib.evaluation.ablation_table import AblationError
from hardsep_lib.mining.features import FeatureSettings
from hardsep_lib.mining.jobs import mine_mixtures, mine_pairs
from hardsep_lib.mining.pairs import HardPairRule

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Training:
    """One training configuration: its train.py switches and the mining criterion (or None)."""

    name: str
    dynamic_mixing: bool
    weighted_train_loss: bool
    criterion: str = None


TRAININGS = {
    "baseline": Training("baseline", False, False),
    "dm": Training("dm", True, False),
    "dm_wtl": Training("dm_wtl", True, True),
    "dm_pitch": Training("dm_pitch", True, False, "pitch"),
    "dm_embedding": Training("dm_embedding", True, False, "embedding"),
    "dm_wtl_combined": Training("dm_wtl_combined", True, True, "combined"),
}
# row: (training, selection)
ROWS = {
    "baseline": ("baseline", "plain"),
    "dm": ("dm", "plain"),
    "dm_wvl": ("dm", "weighted"),
    "dm_wtl": ("dm_wtl", "plain"),
    "dm_wtl_wvl": ("dm_wtl", "weighted"),
    "dm_wvl_pitch": ("dm_pitch", "weighted"),
    "dm_wvl_embedding": ("dm_embedding", "weighted"),
    "dm_wtl_wvl_combined": ("dm_wtl_combined", "weighted"),
}


@dataclasses.dataclass
class AblationConfig:
    """What an ablation config YAML holds (see hparams/ablation_cpu.yaml)."""

    train_yaml: str
    data_folder: str
    seeds: list
    rows: list
    prepare: dict
    overrides: dict = dataclasses.field(default_factory=dict)
    mining: dict = dataclasses.field(default_factory=dict)
    hard_ratio: float = 0.3
    reference: str = "dm"
    hsr: list = dataclasses.field(default_factory=lambda: [5.0, 10.0])


def load_config(path):
    """An AblationConfig from a YAML file; unknown rows, no seeds or a missing file are errors."""
    if not os.path.isfile(path):
        raise AblationError(f"ablation config not found: {path}")
    with open(path) as handle:
        raw = load_hyperpyyaml(handle)
    fields = {field.name for field in dataclasses.fields(AblationConfig)}
    unknown = set(raw) - fields
    if unknown:
        raise AblationError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(fields))}")
    try:
        config = AblationConfig(**raw)
    except TypeError as error:
        raise AblationError(f"{path}: {error}") from error
    bad = [row for row in config.rows if row not in ROWS]
    if bad:
        raise AblationError(f"{path}: unknown row(s) {', '.join(bad)}; rows are {', '.join(ROWS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise AblationError(f"{path}: seeds must be a non-empty list of distinct integers")
    if config.reference not in config.rows:
        raise AblationError(f"{path}: the reference row {config.reference!r} is not among the rows")
    return config


def _row_done(folder, row, seed):
    return os.path.isfile(os.path.join(folder, row, f"seed{seed}", "test_results.csv"))


class Progress:
    """One line per event (run started, epoch done with an ETA, run finished), thread-safe."""

    def __init__(self, total):
        self.total = total
        self.finished = 0
        self.started = time.time()
        self.lock = threading.Lock()

    def say(self, message):
        with self.lock:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def done(self, label):
        with self.lock:
            self.finished += 1
            elapsed = time.time() - self.started
            left = elapsed / self.finished * (self.total - self.finished)
            print(f"[{time.strftime('%H:%M:%S')}] {label} finished ({self.finished}/{self.total} runs; "
                  f"about {left / 60:.0f} min left)", flush=True)


def _epochs_logged(log_path):
    if not os.path.isfile(log_path):
        return 0
    with open(log_path) as handle:
        return sum(1 for line in handle if line.startswith("epoch:"))


class AblationRunner:
    """Prepares, mines and trains what the rows of a config need; skips what is done."""

    def __init__(self, config, folder, jobs=1):
        self.config = config
        self.folder = folder
        self.prep = os.path.join(folder, "prep")
        self.jobs = jobs

    def pairs_csv(self, criterion):
        return os.path.join(self.prep, f"pairs_{criterion}.csv")

    def prepare_and_mine(self):
        """Manifests once; pair CSVs once per criterion (sharing one feature cache)."""
        options = dict(self.config.prepare)
        prepare_data(options.pop("corpus", "synth"), self.config.data_folder, self.prep, **options)
        criteria = sorted({TRAININGS[ROWS[row][0]].criterion for row in self.config.rows} - {None})
        cache = os.path.join(self.prep, "feature_cache")
        for criterion in criteria:
            if not os.path.isfile(self.pairs_csv(criterion)):
                rule = HardPairRule(criterion, self.config.mining.get("hard_fraction", 0.1))
                mine_pairs(os.path.join(self.prep, "train_sources.csv"), self.pairs_csv(criterion), FeatureSettings(),
                           cache, workers=self.config.mining.get("workers", 1), rule=rule)
        features = os.path.join(self.prep, "test_features.csv")
        if criteria and not os.path.isfile(features):
            rule_csv = self.pairs_csv("combined" if "combined" in criteria else criteria[0])
            mine_mixtures(os.path.join(self.prep, "test.csv"), features, FeatureSettings(), cache, pairs_csv=rule_csv)

    def tasks(self):
        """[(training, seed, [(row, selection), ...])] still to do, seed-major (all rows of seed 1 first)."""
        todo = []
        for seed in self.config.seeds:
            for name, training in TRAININGS.items():
                rows = [(row, ROWS[row][1]) for row in self.config.rows if ROWS[row][0] == name]
                pending = [(row, selection) for row, selection in rows if not _row_done(self.folder, row, seed)]
                if pending:
                    todo.append((training, seed, pending))
        return todo

    def command(self, training, seed, row, selection, test_only=False):
        """The train.py command line of one training (and the test of its first row), or of a test-only row."""
        options = {
            "data_folder": self.config.data_folder, "save_folder": self.prep, "skip_prep": True, "seed": seed,
            "output_folder": os.path.join(self.folder, "runs", training.name, f"seed{seed}"),
            "dynamic_mixing": training.dynamic_mixing, "weighted_train_loss": training.weighted_train_loss,
            "weighted_valid_loss": selection == "weighted", "test_selection": selection,
            "test_folder": os.path.join(self.folder, row, f"seed{seed}"),
            "hard_pairs_csv": self.pairs_csv(training.criterion) if training.criterion else None,
            "hard_ratio": self.config.hard_ratio if training.criterion else 0.0,
            **self.config.overrides,
        }
        features = os.path.join(self.prep, "test_features.csv")
        if os.path.isfile(features):
            options["test_features_csv"] = features
        command = [sys.executable, "train.py", self.config.train_yaml]
        for key, value in options.items():
            command += [f"--{key}", "null" if value is None else str(value)]
        return command + (["--test_only"] if test_only else [])

    def epoch_limit(self):
        """number_of_epochs of the runs: the config's override, else the training YAML's."""
        if "number_of_epochs" in self.config.overrides:
            return int(self.config.overrides["number_of_epochs"])
        with open(self.config.train_yaml) as handle:
            match = re.search(r"^number_of_epochs:\s*(\d+)", handle.read(), flags=re.MULTILINE)
        if not match:
            raise AblationError(f"{self.config.train_yaml} has no number_of_epochs")
        return int(match.group(1))

    def _run_task(self, task, progress):
        training, seed, rows = task
        label = f"{training.name} seed {seed}"
        first_row, first_selection = rows[0]
        output = os.path.join(self.folder, "runs", training.name, f"seed{seed}")
        log_path = os.path.join(output, "train_log.txt")
        epochs = self.epoch_limit()
        logged = _epochs_logged(log_path)
        state = "training" if logged == 0 else ("resuming training" if logged < epochs else "testing")
        progress.say(f"{label}: {state} (rows {', '.join(row for row, _ in rows)})")
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "ablation_stdout.txt"), "a") as stdout:
            process = subprocess.Popen(self.command(training, seed, first_row, first_selection), stdout=stdout,
                                       stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(self.threads)})
            started, seen = time.time(), _epochs_logged(log_path)
            first_seen = seen
            while process.poll() is None:
                time.sleep(5)
                now = _epochs_logged(log_path)
                if now > seen:
                    seen = now
                    rate = (time.time() - started) / max(1, seen - first_seen)
                    progress.say(f"{label}: epoch {seen}/{epochs}, ~{rate * (epochs - seen) / 60:.0f} min to go")
            if process.returncode != 0:
                raise AblationError(f"{label}: train.py failed (exit {process.returncode}); see "
                                    f"{os.path.join(output, 'ablation_stdout.txt')}")
            for row, selection in rows[1:]:
                progress.say(f"{label}: testing row {row} (best checkpoint by {selection} validation SI-SNR)")
                result = subprocess.run(self.command(training, seed, row, selection, test_only=True), stdout=stdout,
                                        stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(self.threads)})
                if result.returncode != 0:
                    raise AblationError(f"{label}: testing {row} failed; see {stdout.name}")
        progress.done(label)

    def run(self):
        """Prepares and mines (once), then runs every pending training ``jobs`` at a time."""
        self.prepare_and_mine()
        tasks = self.tasks()
        done = sum(_row_done(self.folder, row, seed) for row in self.config.rows for seed in self.config.seeds)
        progress = Progress(len(tasks))
        progress.say(f"{done} row-seed results already there; {len(tasks)} training run(s) to go, {self.jobs} at a time")
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for future in [pool.submit(self._run_task, task, progress) for task in tasks]:
                future.result()
