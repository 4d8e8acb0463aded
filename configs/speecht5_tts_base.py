r"""SpeechT5 base TTS fine-tuning: SpeechT5's text-to-speech recipe (120k updates).

Command (GPU host or TPU pod; data.manifest_dir with .wrd transcripts and .spk speakers):
    python -m unispeech_jax.train --config configs/speecht5_tts_base.py --workdir runs/st5_tts \
        --config.init_from=runs/st5_base
    python -m unispeech_jax.synthesize --workdir runs/st5_tts --text "hello there" --out a.wav

L1 (before + after the post-net) + stop BCE + guided attention loss; dropout 0.15, no
layerdrop, Adam (0.9, 0.98, eps 1e-8), no weight decay, clip 25, inverse-sqrt lr 1e-4 after
10k warm-up updates, the encoder frozen for the first 20k; 8 x 3.2M samples per update (raise
optim.grad_accum on fewer devices). Speaker input: a learned table of the training speakers, or
x-vectors with --config.data.speaker_embeddings=DIR. Hardware: not yet run at full scale.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(
        __file__.replace("speecht5_tts_base.py", "speecht5_base.py")
    ).copy_and_resolve_references()
    c.unlock()
    c.total_steps = 120_000
    c.checkpoint_every = 3_000
    finetune(c, lr=1e-4)
    d = c.data
    d.max_sample_len = 480_256  # the recipe's longest target speech (30 s)
    d.bucket_boundaries = (160_000, 320_000, 480_256)
    d.text_bucket_boundaries = (256, 448, 600)
    d.max_samples_per_batch = 8 * 3_200_000
    d.batch_multiple = 8
    c.model.max_text_positions = 600
    c.lock()
    return c


def finetune(c, lr: float):
    """Turns an unlocked speecht5 pre-training config into SpeechT5's TTS fine-tuning recipe
    (set c.total_steps first: warm-up and encoder freeze are 1/12 and 1/6 of the updates)."""
    d = c.data
    d.labels = ""
    d.km_labels, d.km_clusters, d.log_mel, d.text_ratio = "", 0, False, 0.0
    m = c.model
    m.task = "tts"
    m.use_guided_attention_loss = True
    m.num_speakers = -1  # a learned table of the training speakers (x-vectors: 0 rows)
    m.hidden_dropout = m.attention_dropout = m.activation_dropout = 0.15
    m.positional_dropout = 0.15
    m.encoder_layerdrop = m.decoder_layerdrop = 0.0
    o = c.optim
    o.lr = lr
    o.schedule = "inverse_sqrt"
    o.warmup_steps = round(c.total_steps / 12)  # 10k of the recipe's 120k updates
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.grad_clip = 25.0
    o.freeze_steps = round(c.total_steps / 6)
    o.freeze_regex = r"^encoder/"
