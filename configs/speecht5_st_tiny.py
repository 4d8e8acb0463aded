r"""SpeechT5 speech translation fine-tuning (English speech -> Spanish characters) of the tiny
model on Bible verses spoken by eSpeak NG, CPU.

Command (the verse pairs first: Debian sword-text-web + sword-text-sparv; README, "Speech
translation"; from a speecht5_tiny pre-training workdir, or without init_from from scratch):
    python -m unispeech_jax.data.sword --source engWEB2015eb --target spaRV1909eb \
        --out runs/bible.en-es.tsv
    python -m unispeech_jax.train --config configs/speecht5_st_tiny.py --workdir runs/st5_st \
        --config.init_from=runs/st5_tiny
    python -m unispeech_jax.evaluate --workdir runs/st5_st --split test    # BLEU, chrF
    python -m unispeech_jax.transcribe --workdir runs/st5_st a.wav         # translations

configs/speecht5_asr_tiny.py's recipe without the CTC term, label smoothing 0.1; the text
decoder writes the target language's characters (data/spm_tgt.model).
Hardware: 2 CPU cores, float32, batches of up to 24 audio-s.
Result: docs/results/speecht5_st_sid.md.
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
