r"""Tiny SpeechT5 joint pre-training (speech + text) on the embedded eSpeak NG corpus, on CPU.

Command:
    python -m unispeech_jax.train --config configs/speecht5_tiny.py --workdir runs/st5_tiny

Speech steps (masked prediction of 100 k-means MFCC clusters made on first use; mel
reconstruction + stop token) and text-infilling steps alternate; both go through the
cross-modal quantizer. 4 + 2 layers x 256 on the log-mel front end.
Hardware: 2 CPU cores (shared), float32; speech batches 16 audio-s, text 4096 tokens.
Result (2026-12-02): steps 1-200 -> 601-925: speech mlm 4.56 -> 4.05, L1 2.29 -> 1.16, text
MLE 2.98 -> 2.60; docs/results/speecht5_tiny_pretraining.md.
"""

from unispeech_jax import config as config_lib
from unispeech_jax.models import speecht5


def get_config():
    c = config_lib.defaults()
    c.total_steps = 2000
    c.log_every = 25
    c.eval_every = 500
    c.eval_max_batches = 4
    c.checkpoint_every = 250

    d = c.data
    d.corpus.hours = 2.0
    d.labels = ""  # no phone transcripts: pre-training reads km, mel and text
    d.max_label_len = 16
    d.max_sample_len = 64_000
    d.bucket_boundaries = (32_000, 48_000, 64_000)
    d.max_samples_per_batch = 256_000
    d.batch_multiple = 4
    d.num_parallel_calls = 2
    d.km_labels = "km"
    d.km_clusters = 100
    d.log_mel = True
    d.text_ratio = 0.5
    d.text_bucket_boundaries = (64, 128)
    d.max_tokens_per_batch = 4096

    c.model = speecht5.default_config()
    m = c.model
    m.feature_encoder = "log_mel"  # as configs/tiny.py: cheaper on CPU, learns sooner
    # The log-mel front end reads only conv_dim[-1] (its conv's channels); with the conv
    # front end, narrow first convs: they dominate the cost at high frame rates.
    m.conv_dim = (128,) * 3 + (256,) * 4
    m.hidden_size = 256
    m.encoder_layers, m.encoder_attention_heads, m.encoder_ffn_dim = 4, 4, 1024
    m.decoder_layers, m.decoder_attention_heads, m.decoder_ffn_dim = 2, 4, 1024
    m.encoder_layerdrop = m.decoder_layerdrop = 0.0
    m.num_conv_pos_embeddings = 64
    m.encoder_max_relative_position = 64
    m.speech_decoder_postnet_units = 128
    m.num_clusters = 100
    m.final_dim = 128

    c.optim.lr = 5e-4
    c.optim.warmup_steps = 200
    return c
