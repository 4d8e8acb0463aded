r"""SpeechT5 voice conversion (speech -> the same sentence in another voice), tiny model, CPU.

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.train --config configs/speecht5_vc_tiny.py --workdir runs/st5_vc \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_vc --split train:heldout
    python -m unispeech_jax.convert_voice --workdir runs/st5_vc --speaker NAME a.wav --out b.wav

SpeechT5ForSpeechToSpeech trained with configs/speecht5_tts_tiny.py's recipe (TTS's loss,
schedule, dropout; time masking of the input p 0.05), the target speaker's learned table row
as the speaker input; a corpus with every sentence in two voices; scored on held-out sentences
of training speakers (train:heldout).
Hardware: 2 CPU cores, float32, batches of up to 24 audio-s (source and target side each).
Result (2026-12-04, 100-update runs on a 0.5 h corpus only): held-out MCD 4.16 dB from a
300-step speecht5_tiny, 6.18 from scratch (the unconverted source: 4.07); speecht5_vc_se.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = speech_to_speech_tiny("vc")
    c.unlock()
    c.data.corpus.parallel = 2  # (source, target) pairs: one sentence, two voices
    c.data.heldout_fraction = 0.05  # sentences of training voices to convert into
    c.lock()
    return c


def speech_to_speech_tiny(task: str):
    """configs/speecht5_tts_tiny.py's recipe with a speech input, `model.task` = task."""
    here = __file__.replace("speecht5_vc_tiny.py", "")
    c = config_lib.load_file(here + "speecht5_tts_tiny.py")
    c.unlock()
    c.model.task = task
    c.model.mask_time_prob = 0.05  # the fine-tuning value (HF's default), as ASR
    c.model.mask_time_length = 10
    c.lock()
    return c
