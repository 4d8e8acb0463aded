r"""SpeechT5 speaker identification fine-tuning of the tiny model on the eSpeak corpus's
training voices, CPU.

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.train --config configs/speecht5_sid_tiny.py --workdir runs/st5_sid \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_sid --split test  # EER, unseen voices
    python -m unispeech_jax.tools.speaker_embeddings --workdir runs/st5_sid --out runs/xvec

Mean encoder frame -> 512-wide speaker embedding -> a logit per training speaker; 10 % of the
training sentences are held out as `train:heldout`, the validation split (accuracy).
configs/speecht5_asr_tiny.py's optimiser (encoder frozen for the first 16 %). 2 CPU cores.
Result (2026-12-04, 200 updates): test EER 0.36 from a 300-step speecht5_tiny, 0.33 from
scratch, held-out accuracy ~0 for both; docs/results/speecht5_st_sid.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    # num_speakers -1: one class per training speaker, counted when training starts
    c = config_lib.load_module(__file__.replace("_sid_", "_asr_")).tiny_finetuning(
        "speecht5_asr_base.py", lr=1.5e-4, task="sid", ctc_loss_weight=0.0, num_speakers=-1
    )
    with c.unlocked():
        c.data.heldout_fraction = 0.1
        c.data.eval_split = "train:heldout"
    return c
