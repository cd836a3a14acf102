"""hardsep: hard-sample mining for speech separation with SpeechBrain.

Sub-packages, grouped by concern (as SpeechBrain's dataio/nnet/inference and Asteroid's
data/losses/engine):
    data/        layouts (public corpora's folder layouts), prepare (manifests), audio (header
                 reads, checks, resampling), synth_corpus (espeak-ng demo corpus), mixing,
                 dynamic_mixing (DM dataset and hard-pair sampler), dataio (train.py datasets)
    mining/      pitch (pyworld F0), embeddings (speaker-embedding backends), features (cached
                 per-utterance features), pairs (speaker features, pair table, hard-pair rule),
                 jobs (mine_hard.py's jobs), correlation (Pearson r, scatter plots)
    training/    brain (the Separation Brain), weighting (WTL/WVL), ddp (DDP helpers)
    evaluation/  metrics (per-mixture test metrics, HSR, summary)
    io_utils     atomic writes of CSV / JSON / audio files
"""
