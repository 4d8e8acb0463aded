"""SpeechT5 speech → speech fine-tuning, HF's SpeechT5ForSpeechToSpeech: the speech encoder
pre-net and encoder read the source audio, the speech decoder and post-net generate the target
log-mel with TTS's objective (tasks/spectrogram.py). Two tasks, which differ only in their
data (data/task_split.py): voice conversion ('vc': the same sentence in another voice, the
target speaker's vector as the speaker input) and speech enhancement ('se': the clean
recording of a noisy or reverberant one)."""

from __future__ import annotations

from unispeech_jax.models.speecht5.apply import split_rngs
from unispeech_jax.models.speecht5.tasks import spectrogram
from unispeech_jax.models.speecht5.tasks.asr import time_mask


def loss(module, params, model_state, batch, rng, step, train, task: str):
    """Speech → speech L1 + stop BCE (+ guided attention) on a batch with source `audio` and
    target `mel` (`spectrogram.loss`, metrics '<task>/…'); training masks time spans of the
    encoder input as ASR does (mask_time_*)."""
    rngs, mask_rng = split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    mask_time = time_mask(module.args, audio_mask, mask_rng, train)

    def encode(self):
        return self.encode_speech(audio, audio_mask, mask_time, train=train)

    return spectrogram.loss(module, params, model_state, batch, rngs, train, encode, task)
