r"""SpeechT5 speech translation fine-tuning (English speech -> Spanish characters) of the tiny
model on Bible verses spoken by eSpeak NG, CPU (verse pairs: README, "speech translation").

Command (from a speecht5_tiny pre-training workdir; without init_from: from scratch):
    python -m unispeech_jax.data.sword --source engWEB2015eb --target spaRV1909eb \
        --out runs/bible.en-es.tsv
    python -m unispeech_jax.train --config configs/speecht5_st_tiny.py --workdir runs/st5_st \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_st --split test    # BLEU, chrF

configs/speecht5_asr_tiny.py's recipe without CTC, label smoothing 0.1; the decoder writes
the target language's characters (spm_tgt.model). Hardware: 2 CPU cores, float32.
Result (2026-12-04, 200 updates, 1 h): test BLEU 0.0 from a 300-step speecht5_tiny and from
scratch (valid CE 3.36 vs 3.38); docs/results/speecht5_st_sid.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_module(__file__.replace("_st_", "_asr_")).tiny_finetuning(
        "speecht5_asr_base.py", lr=1.5e-4, task="st", ctc_loss_weight=0.0, label_smoothing=0.1
    )
    with c.unlocked():
        c.data.corpus.translations = "runs/bible.en-es.tsv"  # relative to the working directory
        c.data.text_bucket_boundaries = (64, 96, 128)  # Spanish renderings run a little longer
    return c
