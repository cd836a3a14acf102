"""train.py's option checks, in one place, before any audio is read.

hyperpyyaml reads ``--weighted_train_loss off`` as the string "off" (YAML 1.2), which Python
would treat as True: booleans must be real booleans. Ranges and the WTL step size are checked
here too, so that a mistake is one clear error at start-up, not a silently different run.
"""

import os

from hardsep_lib.errors import OptionError

BOOLEAN_KEYS = ("dynamic_mixing", "weighted_train_loss", "weighted_valid_loss", "skip_prep", "threshold_byloss")
POSITIVE_INT_KEYS = ("batch_size", "dm_epoch_size", "number_of_epochs", "training_signal_len", "sample_rate")
# docs/method.md: WTL must rank several mixtures per optimiser step (with one it is the plain loss).
MIN_MIXTURES_PER_WTL_STEP = 4
TEST_SELECTIONS = ("plain", "weighted")


def world_size():
    """Processes of a torchrun / DDP launch (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def mixtures_per_step(hparams, run_opts):
    """batch_size x grad_accumulation_factor x world_size: the mixtures of one optimiser step."""
    factor = run_opts.get("grad_accumulation_factor", hparams.get("grad_accumulation_factor", 1))
    return hparams["batch_size"] * int(factor) * world_size()


def test_selection(hparams):
    """The validation key whose best checkpoint is tested: ``test_selection`` if set, else the
    one ``weighted_valid_loss`` picks."""
    selection = hparams.get("test_selection")
    if selection is None:
        return "weighted" if hparams["weighted_valid_loss"] else "plain"
    return selection


def check_training_options(hparams, run_opts):
    """Raises OptionError naming the option for the first bad one; returns None when all hold."""
    for key in BOOLEAN_KEYS:
        if key in hparams and not isinstance(hparams[key], bool):
            raise OptionError(f"--{key} must be True or False (true/false/1/0 in YAML), got {hparams[key]!r}")
    for key in POSITIVE_INT_KEYS:
        value = hparams.get(key)
        if key in hparams and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OptionError(f"--{key} must be an integer >= 1, got {value!r}")
    ratio = hparams.get("hard_ratio", 0.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise OptionError(f"--hard_ratio (P_S) must be a number in [0, 1], got {ratio!r}")
    if hparams.get("hard_pairs_csv") and not os.path.isfile(hparams["hard_pairs_csv"]):
        raise OptionError(f"--hard_pairs_csv {hparams['hard_pairs_csv']} does not exist")
    selection = hparams.get("test_selection")
    if selection is not None and selection not in TEST_SELECTIONS:
        raise OptionError(f"--test_selection must be plain or weighted, got {selection!r}")
    if hparams["weighted_train_loss"]:
        per_step = mixtures_per_step(hparams, run_opts)
        if per_step < MIN_MIXTURES_PER_WTL_STEP:
            raise OptionError(
                f"weighted_train_loss (WTL) ranks the mixtures of one optimiser step, but a step holds "
                f"{per_step} (batch_size x grad_accumulation_factor x processes); it needs >= "
                f"{MIN_MIXTURES_PER_WTL_STEP}: raise --batch_size or --grad_accumulation_factor, "
                "or set --weighted_train_loss False")
