r"""SpeechT5 base ASR fine-tuning: SpeechT5's recipe for LibriSpeech 100 h (80k updates).

Command (GPU host or TPU pod; data.manifest_dir with .wrd transcripts, or the eSpeak corpus):
    python -m unispeech_jax.train --config configs/speecht5_asr_base.py --workdir runs/st5_asr \
        --config.init_from=runs/st5_base
    python -m unispeech_jax.transcribe --workdir runs/st5_asr --beam 10 --ctc-weight 0.3 a.wav

Cross-entropy + 0.5 CTC on the encoder output; Adam (0.9, 0.98, eps 1e-8), weight decay 0.1,
clip 25, tri-stage lr 6e-5 (10/40/50 %, final 0.05), the encoder frozen for the first 13k
updates, time masking p 0.05; 2 x 8 x 1.6M samples per update (raise optim.grad_accum on
fewer devices). Hardware: not yet run at full scale.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(
        __file__.replace("speecht5_asr_base.py", "speecht5_base.py")
    ).copy_and_resolve_references()
    c.unlock()
    c.total_steps = 80_000
    c.checkpoint_every = 3_000
    finetune(c, lr=6e-5)
    d = c.data
    d.max_sample_len = 560_000  # LibriSpeech's longest utterances (35 s)
    d.bucket_boundaries = (160_000, 320_000, 480_000, 560_000)
    d.text_bucket_boundaries = (200, 400, 500, 600)  # model.max_text_positions 450 -> 600
    d.max_samples_per_batch = 2 * 8 * 1_600_000
    d.batch_multiple = 8
    c.model.max_text_positions = 600
    c.lock()
    return c


def finetune(c, lr: float):
    """Turns an unlocked speecht5 pre-training config into SpeechT5's ASR fine-tuning recipe
    (set c.total_steps first: the encoder freeze is 13k of the recipe's 80k updates)."""
    d = c.data
    d.labels = ""
    d.km_labels, d.km_clusters, d.log_mel, d.text_ratio = "", 0, False, 0.0
    m = c.model
    m.task = "asr"
    m.ctc_loss_weight = 0.5  # on the encoder output; the blank is <s>, id 1 of spm_char.model
    m.mask_time_prob = 0.05  # the fine-tuning value (HF's default), not pre-training's 0.8
    m.mask_time_length = 10
    o = c.optim
    o.lr = lr
    o.schedule = "tri_stage"
    o.phase_ratio = (0.1, 0.4, 0.5)
    o.final_lr_scale = 0.05
    o.eps = 1e-8
    o.weight_decay = 0.1
    o.grad_clip = 25.0
    o.freeze_steps = round(c.total_steps * 13 / 80)
    o.freeze_regex = r"^encoder/"
