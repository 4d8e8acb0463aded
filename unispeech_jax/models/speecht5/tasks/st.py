"""SpeechT5 speech translation fine-tuning (speech → text of another language): the encoder-
decoder cross-entropy of asr.py on the target language's text ids (the model's text embedding
and output layer are sized by data/spm_tgt.model; `vocab_size`), reported as `st/…`. No CTC
term: SPEC §3 gives the encoder CTC to ASR only, and a translation is not monotonic in the
speech (model.ctc_loss_weight adds one all the same); `decoding.speecht5.recognize` translates."""

from __future__ import annotations

from unispeech_jax.models.speecht5.tasks import asr


def loss(module, params, model_state, batch, rng, step, train):
    """Speech → target-language cross-entropy on a batch with audio and its translation's
    `text` tokens; see `loss_fn`."""
    return asr.speech_to_text_loss(module, params, model_state, batch, rng, train, "st")
