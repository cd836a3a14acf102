"""The deterministic espeak-ng demo corpus, in the ``<root>/<speaker>/<utt>.wav`` folder layout.

48 speakers by default: 16 espeak-ng voice variants (8 male, 8 female) x 3 pitch settings
each; up to 144 with ``n_speakers`` (a multiple of 6: more variants, half male, half female;
the first 48 are always the default corpus). Per variant, one speaker is low and two are
"twins": the same variant at pitch settings two steps apart, so near-identical voice pairs
(close pitch, close timbre) exist for hard-pair mining. Median F0 spans roughly 80-300 Hz.
The table of speakers is written to ``speakers.csv``.
"""

import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from hardsep_lib.data.audio import load_mono, resample
from hardsep_lib.errors import OptionError
from hardsep_lib.io_utils import write_csv, write_wav

logger = logging.getLogger(__name__)

MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt",
                 "m8", "klatt2", "klatt3", "klatt4", "norbert", "travis", "victor", "Andy", "Michael", "Mike",
                 "Paul", "Robert", "Ed", "John", "Max", "Zac")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "linda", "Annie", "Alicia",
                   "Andrea", "Auntie", "Belinda", "Steph", "Steph2", "Steph3", "anika", "shelby", "grandma",
                   "female2", "female3", "female4", "female5", "Demonic")
DEFAULT_SPEAKERS = 48
MAX_SPEAKERS = 6 * min(len(MALE_VARIANTS), len(FEMALE_VARIANTS))
# espeak-ng -p settings (0-99): (low, twin A, twin B) per gender.
MALE_PITCHES = (30, 62, 64)
FEMALE_PITCHES = (35, 70, 72)
UTTERANCES_PER_SPEAKER = 6
SAMPLE_RATE = 8000
# Harvard sentences (IEEE 1969), public domain.
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
)


def speaker_table(n_speakers=DEFAULT_SPEAKERS):
    """One row per speaker: spk_id, variant, gender, pitch (espeak -p), speed (words/min), twin.

    The default 48 voices come first (the same voices whatever ``n_speakers``; ids get three
    digits from 101 speakers on); more speakers add voice variants, three speakers each.
    """
    if n_speakers % 6 or not 6 <= n_speakers <= MAX_SPEAKERS:
        raise OptionError(f"--n_speakers must be a multiple of 6 in [6, {MAX_SPEAKERS}], got {n_speakers}")
    per_gender = n_speakers // 6
    default = DEFAULT_SPEAKERS // 6
    groups = [(gender, variants[index], pitches, index)
              for block in ((0, min(per_gender, default)), (default, per_gender))
              for gender, variants, pitches in (("M", MALE_VARIANTS, MALE_PITCHES), ("F", FEMALE_VARIANTS, FEMALE_PITCHES))
              for index in range(*block)]
    width = max(2, len(str(n_speakers - 1)))
    rows = []
    for gender, variant, pitches, variant_index in groups:
        base = len(rows)
        for pitch_index, pitch in enumerate(pitches):
            twin = f"spk{base + 3 - pitch_index:0{width}d}" if pitch_index else ""
            rows.append({"spk_id": f"spk{len(rows):0{width}d}", "variant": variant, "gender": gender,
                         "pitch": pitch, "speed": 150 + 5 * (variant_index % 4), "twin": twin})
    return pd.DataFrame(rows)


def synthesize(text, variant, pitch, speed):
    """espeak-ng speech for ``text`` as float32 (samples,) at SAMPLE_RATE Hz."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "utt.wav")
        command = ["espeak-ng", "-v", f"en+{variant}", "-p", str(pitch), "-s", str(speed), "-w", path, text]
        try:
            subprocess.run(command, check=True, capture_output=True)
        except FileNotFoundError as error:
            raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng") from error
        signal, rate = load_mono(path)
    return resample(signal, rate, SAMPLE_RATE)


def _utterance_jobs(speakers, seed, utterances_per_speaker, sentences_per_utterance):
    """(path, text, speaker row) for every utterance; sentences drawn per speaker by seed."""
    rng = np.random.default_rng(seed)
    jobs = []
    for speaker in speakers.itertuples():
        drawn = rng.choice(len(SENTENCES), size=(utterances_per_speaker, sentences_per_utterance), replace=False)
        for indices in drawn:
            utt_id = f"{speaker.spk_id}_" + "-".join(f"{int(index):03d}" for index in indices)
            text = " ".join(SENTENCES[index] for index in indices)
            jobs.append((os.path.join(speaker.spk_id, utt_id + ".wav"), text, speaker))
    return jobs


def _check_target(root, speakers):
    """Refuses a folder that holds anything but this same synthetic corpus (nothing is overwritten)."""
    if not os.path.isdir(root) or not os.listdir(root):
        return
    existing = os.path.join(root, "speakers.csv")
    if not os.path.isfile(existing):
        raise OptionError(f"{root} is not empty and holds no synthetic corpus (no speakers.csv): give --corpus synth "
                          "an empty folder or one it generated before")
    previous = pd.read_csv(existing, dtype=str, keep_default_na=False)
    if list(previous.columns) != list(speakers.columns) or not previous.equals(speakers.astype(str)):
        raise OptionError(f"{root} holds a different corpus ({len(previous)} speakers in its speakers.csv); "
                          f"--n_speakers {len(speakers)} needs another folder")


def generate_corpus(root, seed=1234, workers=2, utterances_per_speaker=UTTERANCES_PER_SPEAKER,
                    sentences_per_utterance=1, n_speakers=DEFAULT_SPEAKERS):
    """Writes the corpus of ``n_speakers`` under ``root`` (skipping files already there);
    returns the speaker table.

    Each utterance reads ``sentences_per_utterance`` Harvard sentences (1: about 2.5 s; 3:
    about 7.5 s, the length of a WSJ0 utterance).
    """
    speakers = speaker_table(n_speakers)
    _check_target(root, speakers)
    jobs = _utterance_jobs(speakers, seed, utterances_per_speaker, sentences_per_utterance)
    jobs = [job for job in jobs if not os.path.exists(os.path.join(root, job[0]))]

    def render(job):
        relative, text, speaker = job
        signal = synthesize(text, speaker.variant, speaker.pitch, speaker.speed)
        write_wav(os.path.join(root, relative), signal, SAMPLE_RATE)

    logger.info("Synthesising %d utterances of %d speakers into %s", len(jobs), len(speakers), root)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(render, jobs))
    write_csv(speakers, os.path.join(root, "speakers.csv"))
    return speakers
