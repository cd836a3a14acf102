"""hardsep: hard-sample mining for speech separation with SpeechBrain.

Modules, one job each:
    io_utils            atomic writes of CSV / JSON / audio files
    audio               header reads, corrupt/silent checks, cached resampling, skip reports
    mixing              mixing two sources at given levels (fixed sets and DM)
    layouts             the public corpora's folder layouts (WSJ0-2mix, Libri2Mix, speaker trees)
    prepare             prepare_data(): manifests for every supported corpus
    synth_corpus        the deterministic espeak-ng demo corpus
    pitch               pyworld F0 (dio + stonemask, harvest)
    embeddings          speaker-embedding backends (resemblyzer, SpeechBrain EncoderClassifier)
    utterance_features  cached per-utterance F0 and embeddings, workers and shards
    mining              speaker features, the pair table and the hard-pair rules
    mining_jobs         the jobs of mine_hard.py (pairs, mixtures, correlate)
    correlation         Pearson r of SI-SNRi vs pair features, scatter plots
    weighting           WTL and WVL (rank-weighted SI-SNR)
    dynamic_mixing      the DM dataset and hard-pair sampler
    dataio              datasets and loader options for train.py
    ddp                 DDP helpers (gather, sum, shard sampler)
    evaluation          per-mixture test metrics, HSR and the summary
    separation          the Separation Brain
"""
