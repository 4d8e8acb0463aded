"""SpeechT5 fine-tuning tasks, one module each with its `loss(module, params, model_state,
batch, rng, step, train) -> (loss, (metrics, model_state))`; `TASK_LOSSES` maps
`model.task` to it."""

import functools

from unispeech_jax.models.speecht5.tasks import asr, sid, speech_to_speech, st, tts

TASK_LOSSES = {
    "asr": asr.loss,
    "tts": tts.loss,
    "st": st.loss,
    "sid": sid.loss,
    "vc": functools.partial(speech_to_speech.loss, task="vc"),
    "se": functools.partial(speech_to_speech.loss, task="se"),
}
