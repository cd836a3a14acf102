"""Speaker-embedding backends behind one small interface.

A backend turns a list of (samples,) float32 signals at its ``sample_rate`` into an
(n, dim) array. Add one by subclassing EmbeddingBackend and registering it in make_backend.
    resemblyzer            d-vector (GE2E); weights ship in the wheel, so it works offline
    speechbrain:<source>   an ECAPA-TDNN or x-vector EncoderClassifier from a local
                           pretrained folder or a hub id (e.g. speechbrain/spkrec-ecapa-voxceleb)
"""

import os

import numpy as np
import torch

from hardsep_lib.errors import OptionError


class EmbeddingBackend:
    """Interface: ``sample_rate`` (Hz) and ``embed(signals)``."""

    sample_rate = 16000

    def embed(self, signals):
        """(n, dim) float32 embeddings of n (samples,) signals at ``sample_rate`` Hz."""
        raise NotImplementedError


class ResemblyzerBackend(EmbeddingBackend):
    """Resemblyzer's d-vector (256-dim), batched over utterances.

    Resemblyzer embeds one utterance at a time (a batched version is a TODO in its
    ``embed_utterance``); ``embed`` below is that function applied to many utterances at once:
    every utterance's 1.6 s partials go through the LSTM in one batch (one GPU call with
    ``--device cuda``), then each utterance averages its own partials. Partials are taken
    without overlap (rate 0.625/s, the lowest the library allows, instead of its default
    1.3/s, which reads every second about twice): half the compute, and the speaker-level
    mean that mining uses averages over many windows anyway.
    """

    partials_per_second = 0.625
    # resemblyzer's default: a last partial at least 75% covered by audio is kept (zero-padded)
    min_coverage = 0.75

    def __init__(self, device="cpu"):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device=device, verbose=False)
        self.sample_rate = 16000

    def _partial_mels(self, signal):
        """Mel spectrograms (n_partials, frames, mels) of one utterance's partials."""
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import wav_to_mel_spectrogram

        trimmed = preprocess_wav(signal, source_sr=self.sample_rate)
        # Resemblyzer's VAD trims everything from some synthetic or very quiet files;
        # the untrimmed signal still gives a usable d-vector then.
        wav = trimmed if len(trimmed) else signal
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(wav), self.partials_per_second, self.min_coverage)
        if wav_slices[-1].stop >= len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = wav_to_mel_spectrogram(wav)
        return np.stack([mel[mel_slice] for mel_slice in mel_slices])

    def embed(self, signals):
        partials = [self._partial_mels(signal) for signal in signals]
        owners = np.repeat(np.arange(len(signals)), [len(mels) for mels in partials])
        with torch.no_grad():
            batch = torch.from_numpy(np.concatenate(partials)).to(self.encoder.device)
            partial_embeddings = self.encoder(batch).cpu().numpy()
        sums = np.zeros((len(signals), partial_embeddings.shape[1]))
        np.add.at(sums, owners, partial_embeddings)
        means = sums / np.bincount(owners)[:, None]
        return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


class SpeechBrainBackend(EmbeddingBackend):
    """A SpeechBrain EncoderClassifier (ECAPA-TDNN, x-vector), batched with padding."""

    def __init__(self, source, device="cpu", models_dir="pretrained_models"):
        from speechbrain.inference.classifiers import EncoderClassifier

        savedir = os.path.join(models_dir, source.strip("/").replace("/", "_"))
        self.model = EncoderClassifier.from_hparams(source=source, savedir=savedir, run_opts={"device": device})
        self.sample_rate = self.model.audio_normalizer.sample_rate
        self.device = device
        self.cuda_batch_size = 32

    def embed(self, signals):
        """On CPU one utterance per forward pass; on CUDA length-sorted padded batches.

        ECAPA's convolutions see the padding next to the last frames, so a padded utterance's
        embedding depends on its batch-mates; unpadded passes keep CPU results exact and
        independent of sharding. On a GPU the speed of batching wins; sorting by length keeps
        the padding small.
        """
        if not str(self.device).startswith("cuda"):
            return np.concatenate([self._encode([signal]) for signal in signals])
        order = np.argsort([len(signal) for signal in signals])
        embeddings = np.empty((len(signals), 0), dtype=np.float32)
        for start in range(0, len(order), self.cuda_batch_size):
            chunk = order[start : start + self.cuda_batch_size]
            encoded = self._encode([signals[index] for index in chunk])
            if embeddings.shape[1] == 0:
                embeddings = np.zeros((len(signals), encoded.shape[1]), dtype=np.float32)
            embeddings[chunk] = encoded
        return embeddings

    def _encode(self, signals):
        """(n, dim) embeddings of zero-padded signals, with relative lengths for the model."""
        lengths = torch.tensor([len(signal) for signal in signals], dtype=torch.float32)
        batch = torch.zeros(len(signals), int(lengths.max()))
        for row, signal in enumerate(signals):
            batch[row, : len(signal)] = torch.from_numpy(np.asarray(signal, dtype=np.float32))
        with torch.no_grad():
            embeddings = self.model.encode_batch(batch, lengths / lengths.max())
        return embeddings.squeeze(1).cpu().numpy().astype(np.float32)


def make_backend(spec, device="cpu", models_dir="pretrained_models"):
    """Backend from a ``--embedding`` value: ``resemblyzer`` or ``speechbrain:<source>``
    (whose files are linked or downloaded into ``models_dir``)."""
    if spec == "resemblyzer":
        return ResemblyzerBackend(device)
    if spec.startswith("speechbrain:") and len(spec) > len("speechbrain:"):
        return SpeechBrainBackend(spec[len("speechbrain:") :], device, models_dir)
    raise OptionError(f"unknown embedding backend {spec!r}; use resemblyzer or speechbrain:<source>")
