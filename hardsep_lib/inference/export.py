"""Export a train.py run to a SpeechBrain pretrained-model folder, and load either kind.

The exported folder is what SpeechBrain's own ``SepformerSeparation.from_hparams`` loads
(offline, from a local folder): ``hyperparams.yaml`` with the Encoder, MaskNet and Decoder
of the run (SepFormer or Conv-TasNet), ``num_spks``, ``sample_rate``, ``modules`` and a
``pretrainer``; ``encoder.ckpt``, ``masknet.ckpt`` and ``decoder.ckpt`` from the best
checkpoint by the chosen validation key; and a model card (``README.md``) with the switches
that were on, the selection key, the test summary and the full training YAML
(``training_hyperparams.yaml``). Nothing in it imports hardsep.
"""

import io
import json
import os
import shutil

from ruamel.yaml import YAML

from hardsep_lib.errors import HardsepError
from hardsep_lib.io_utils import atomic_path, write_json
from hardsep_lib.training.brain import SELECTION_KEYS

MODULES = ("encoder", "masknet", "decoder")
YAML_NODES = {"encoder": "Encoder", "masknet": "MaskNet", "decoder": "Decoder"}
SWITCHES = ("dynamic_mixing", "dm_epoch_size", "hard_pairs_csv", "hard_ratio", "weighted_train_loss",
            "weighted_valid_loss", "batch_size", "grad_accumulation_factor", "training_signal_len", "seed")
EXPORT_RECORD = "hardsep_export.json"

PRETRAINER = """
modules:
    encoder: !ref <Encoder>
    masknet: !ref <MaskNet>
    decoder: !ref <Decoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


class ExportError(HardsepError):
    """A model folder that cannot be exported or loaded."""


def is_exported(folder):
    """True for a pretrained-model folder (hyperparams.yaml with a pretrainer, module checkpoints)."""
    path = os.path.join(folder, "hyperparams.yaml")
    if not os.path.isfile(path) or not all(os.path.isfile(os.path.join(folder, f"{m}.ckpt")) for m in MODULES):
        return False
    with open(path) as handle:
        return "pretrainer:" in handle.read()


def best_checkpoint(run_folder, selection):
    """(checkpoint folder, its meta) of the best checkpoint of a train.py run by ``selection``."""
    from speechbrain.utils.checkpoints import Checkpointer

    key = SELECTION_KEYS[selection]
    checkpoints = os.path.join(run_folder, "checkpoints")
    if not os.path.isdir(checkpoints):
        raise ExportError(f"{run_folder} is neither a train.py output folder (no checkpoints/) nor an exported "
                          "model folder (no hyperparams.yaml with a pretrainer)")
    checkpoint = Checkpointer(checkpoints).find_checkpoint(min_key=key)
    if checkpoint is None:
        raise ExportError(f"no checkpoint with a {key} in {checkpoints} (train first)")
    return checkpoint.path, dict(checkpoint.meta)


def inference_yaml(document):
    """The inference hyperparams.yaml text from the run's hyperparams.yaml (a ruamel round-trip
    document): sample_rate, num_spks, Encoder/MaskNet/Decoder (with the blocks they reference
    inlined through their YAML anchors) plus modules and pretrainer."""
    yaml = YAML()
    missing = [key for key in ("sample_rate", "num_spks", *YAML_NODES.values()) if key not in document]
    if missing:
        raise ExportError(f"the run's hyperparams.yaml lacks {', '.join(missing)}")
    kept = type(document)()
    for key in ("sample_rate", "num_spks", *YAML_NODES.values()):
        kept[key] = document[key]
    stream = io.StringIO()
    yaml.dump(kept, stream)
    return "# Exported by hardsep (separate.py export); loads with\n# speechbrain.inference.separation." \
           "SepformerSeparation.from_hparams(source=<this folder>)\n\n" + stream.getvalue() + PRETRAINER


def model_card(run_folder, training, selection, meta, checkpoint):
    """README.md text of an exported folder."""
    summary_path = os.path.join(run_folder, "test_summary.json")
    lines = ["# Speech separation model exported by hardsep", "",
             f"- trained in: `{os.path.abspath(run_folder)}`", f"- checkpoint: `{os.path.basename(checkpoint)}`",
             f"- selected by: **{selection}** validation SI-SNR (`{SELECTION_KEYS[selection]}`)"]
    for key in ("si-snr", "weighted_si-snr"):
        if key in meta:
            lines.append(f"- validation {key} at that checkpoint: {meta[key]:.2f} dB")
    lines += ["", "## Switches of the training run", "", "| key | value |", "|---|---|"]
    lines += [f"| `{key}` | `{training.get(key)}` |" for key in SWITCHES if key in training]
    lines += ["", "## Test summary", ""]
    if os.path.isfile(summary_path):
        with open(summary_path) as handle:
            rows = json.load(handle)
        columns = list(rows[0]) if rows else []
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
                  + " |" for row in rows]
        lines += ["", "(the test stage of the run, with the selection it tested)"]
    else:
        lines.append("No test_summary.json in the run folder.")
    lines += ["", "## Use", "", "```python", "from speechbrain.inference.separation import SepformerSeparation",
              "model = SepformerSeparation.from_hparams(source=\"<this folder>\", savedir=\"<this folder>\")",
              "estimates = model.separate_batch(mixture)  # (batch, samples) -> (batch, samples, num_spks)", "```",
              "", "or `python separate.py --model <this folder> mixture.wav --output_folder out/` (any length).",
              "", "The full training YAML is `training_hyperparams.yaml`.", ""]
    return "\n".join(lines)


def export_model(run_folder, target, selection="weighted"):
    """Writes the pretrained-model folder ``target`` from a train.py output folder; returns ``target``."""
    if selection not in SELECTION_KEYS:
        raise ExportError(f"--selection must be plain or weighted, got {selection!r}")
    training_yaml = os.path.join(run_folder, "hyperparams.yaml")
    if not os.path.isfile(training_yaml):
        raise ExportError(f"{training_yaml} not found: is {run_folder} a train.py output folder?")
    checkpoint, meta = best_checkpoint(run_folder, selection)
    with open(training_yaml) as handle:
        text = handle.read()
    document = YAML().load(text)  # SpeechBrain saved it with every value resolved: no object is built
    training = {key: document[key] for key in SWITCHES if key in document}
    os.makedirs(target, exist_ok=True)
    for module in MODULES:
        source = os.path.join(checkpoint, f"{module}.ckpt")
        if not os.path.isfile(source):
            raise ExportError(f"{source} not found (a checkpoint without the {module})")
        with atomic_path(os.path.join(target, f"{module}.ckpt")) as tmp_path:
            shutil.copyfile(source, tmp_path)
    for name, content in (("hyperparams.yaml", inference_yaml(document)), ("training_hyperparams.yaml", text),
                          ("README.md", model_card(run_folder, training, selection, meta, checkpoint))):
        with atomic_path(os.path.join(target, name)) as tmp_path:
            with open(tmp_path, "w") as handle:
                handle.write(content)
    write_json({"run_folder": os.path.abspath(run_folder), "checkpoint": os.path.basename(checkpoint),
                "selection": selection}, os.path.join(target, EXPORT_RECORD))
    return target


def load_separator(model, selection="weighted", device="cpu"):
    """SpeechBrain's SepformerSeparation for an exported folder or a train.py output folder.

    A train.py folder is exported first into ``<model>/pretrained_<selection>`` (again only
    when its best checkpoint changed), so both kinds load through SpeechBrain's own class.
    """
    from speechbrain.inference.separation import SepformerSeparation

    if not os.path.isdir(model):
        raise ExportError(f"--model {model} is not a folder")
    folder = model
    if not is_exported(model):
        folder = os.path.join(model, f"pretrained_{selection}")
        checkpoint, _ = best_checkpoint(model, selection)
        record = os.path.join(folder, EXPORT_RECORD)
        current = None
        if os.path.isfile(record):
            with open(record) as handle:
                current = json.load(handle).get("checkpoint")
        if current != os.path.basename(checkpoint) or not is_exported(folder):
            export_model(model, folder, selection)
    folder = os.path.abspath(folder)
    return SepformerSeparation.from_hparams(source=folder, savedir=folder, run_opts={"device": device})
