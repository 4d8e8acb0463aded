r"""SpeechT5 ASR fine-tuning (speech -> characters) of the tiny model on the eSpeak corpus, CPU.

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.train --config configs/speecht5_asr_tiny.py --workdir runs/st5_asr \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_asr --split test
    python -m unispeech_jax.transcribe --workdir runs/st5_asr a.wav

configs/speecht5_asr_base.py's recipe (tri-stage lr, encoder frozen for the first 16 % of the
updates, time masking p 0.05) at configs/speecht5_tiny.py's sizes, 2000 updates, lr 6e-5 x 2.5
(speecht5_tiny's scaling of the pre-training lr); whole utterances up to 7 s.
Hardware: 2 CPU cores, float32, batches of up to 24 audio-s.
Result (2026-12-04, 500-update runs only): test CER 1.06 greedy / 0.91 joint CTC 0.3 from a
300-step speecht5_tiny, 0.87 / 0.94 from scratch (near chance); docs/results/speecht5_asr_tts.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    return tiny_finetuning("speecht5_asr_base.py", lr=1.5e-4)


def tiny_finetuning(recipe: str, lr: float, **model):
    """configs/speecht5_tiny.py turned into the fine-tuning recipe of the config file `recipe`
    (its `finetune`), 2000 updates on whole utterances of the eSpeak corpus; `model`: keys of
    config.model set last (another task of the same recipe)."""
    here = __file__.replace("speecht5_asr_tiny.py", "")
    c = config_lib.load_file(here + "speecht5_tiny.py").copy_and_resolve_references()
    c.unlock()
    c.total_steps = 2000
    c.eval_every = 500
    c.eval_max_batches = 0
    config_lib.load_module(here + recipe).finetune(c, lr=lr)
    d = c.data
    d.max_sample_len = 112_000
    d.bucket_boundaries = (48_000, 80_000, 112_000)  # paired with transcripts of up to
    d.text_bucket_boundaries = (64, 96, 112)  # these many characters (+ </s>)
    d.max_samples_per_batch = 384_000
    c.model.update(model)
    c.lock()
    return c
