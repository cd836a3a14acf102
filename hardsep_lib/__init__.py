"""hardsep: hard-sample mining for speech separation with SpeechBrain.

Modules, one job each:
    io_utils      atomic writes of CSV / JSON / audio files
    audio         header reads, corrupt/silent checks, cached resampling
    mixing        mixing two sources at a relative level (fixed sets and DM)
    layouts       the public corpora's folder layouts (WSJ0-2mix, LibriMix, LibriSpeech, folder)
    prepare       prepare_data(): manifests for every supported corpus
    synth_corpus  the deterministic espeak-ng demo corpus
"""
