r"""SpeechT5 TTS fine-tuning (characters -> log-mel) of the tiny model on the eSpeak corpus, CPU.

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.train --config configs/speecht5_tts_tiny.py --workdir runs/st5_tts \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_tts --split test
    python -m unispeech_jax.synthesize --workdir runs/st5_tts --text "hello there" --out a.wav

configs/speecht5_tts_base.py's recipe (inverse-sqrt lr, guided attention, dropout 0.15, the
encoder frozen for the first 1/6 of the updates) at configs/speecht5_tiny.py's sizes, 2000
updates, lr 1e-4 x 2.5 (speecht5_tiny's scaling of the pre-training lr).
Hardware: 2 CPU cores, float32, batches of up to 24 audio-s.
Result (2026-12-04, 120-update runs only): test MCD 3.6 dB from a 300-step speecht5_tiny, 5.2
from scratch; neither stops nor is intelligible yet; docs/results/speecht5_asr_tts.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    tiny = config_lib.load_module(__file__.replace("speecht5_tts_tiny.py", "speecht5_asr_tiny.py"))
    return tiny.tiny_finetuning("speecht5_tts_base.py", lr=2.5e-4)
