"""SpeechT5 fine-tuning tasks, one module each with its `loss(module, params, model_state,
batch, rng, step, train) -> (loss, (metrics, model_state))`; `TASK_LOSSES` maps
`model.task` to it."""

from unispeech_jax.models.speecht5.tasks import asr, sid, st, tts

TASK_LOSSES = {"asr": asr.loss, "tts": tts.loss, "st": st.loss, "sid": sid.loss}
