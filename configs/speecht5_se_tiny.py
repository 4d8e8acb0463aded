r"""SpeechT5 speech enhancement (noisy, reverberant speech -> its clean log-mel) of the tiny
model on the eSpeak corpus with noisy copies at 0-15 dB SNR and reverberation, CPU.

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.train --config configs/speecht5_se_tiny.py --workdir runs/st5_se \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_se --split test --asr-workdir runs/st5_asr
    python -m unispeech_jax.enhance --workdir runs/st5_se noisy.wav --out clean.wav

SpeechT5ForSpeechToSpeech with configs/speecht5_vc_tiny.py's recipe, no speaker input (the
voice is the input's own); one noisy, reverberant copy per utterance at 0, 5, 10 or 15 dB SNR.
Hardware: 2 CPU cores, float32, batches of up to 24 audio-s (noisy and clean side each).
Result (2026-12-04, 600 updates, 0.5 h): test MCD 5.58 dB from a 300-step speecht5_tiny, 6.64
from scratch, noisy input 4.84 (no enhancement yet); STOI 0.30/0.38/0.60; speecht5_vc_se.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    vc = config_lib.load_module(__file__.replace("speecht5_se_tiny.py", "speecht5_vc_tiny.py"))
    c = vc.speech_to_speech_tiny("se")
    c.unlock()
    c.model.num_speakers = 0
    c.data.corpus.noise_snr = (0.0, 5.0, 10.0, 15.0)
    c.data.corpus.reverb = True
    c.lock()
    return c
