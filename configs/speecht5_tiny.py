r"""Tiny SpeechT5 joint pre-training (speech + text) on the embedded eSpeak NG corpus, on CPU.

Command:
    python -m unispeech_jax.train --config configs/speecht5_tiny.py --workdir runs/st5_tiny

Speech batches (masked prediction of 100 k-means MFCC clusters, made on first use and cached in
the corpus folder; mel reconstruction + stop token) and text-infilling batches of the corpus
sentences alternate, half of the steps each; both go through the cross-modal quantizer. The
speech pre-net reads log-mel frames (`model.feature_encoder='log_mel'`, as configs/tiny.py).
Hardware: 2 CPU cores shared with test suites and other training runs the whole time (this
run got roughly half a core to one core; ~3-15 s/step, so the minutes say little); float32.
Batches: speech 4 x 4 s (16 s of audio) at the longest bucket, text 4096 tokens.
Measured 2026-12-02 (run st5b of this file, seed 0; means of the logged steps per window):
  steps     wall min  speech: mlm  mlm acc  L1    BCE   div   code ppl | text: MLE  div   code ppl
  1-200       18           4.56   0.02    2.29  0.17  0.45   108      |      2.98  0.22   154
  201-400     53           4.36   0.04    1.50  0.12  0.32   133      |      2.86  0.08   183
  401-600     62           4.13   0.07    1.29  0.12  0.25   146      |      2.78  0.06   187
  601-925     82           4.05   0.08    1.16  0.09  0.20   157      |      2.60  0.04   191
Every part falls and both code perplexities climb (of 200). Masked prediction starts last: at
chance (ln 100 = 4.61) for ~250 steps, then 3.86 at step 600 (accuracy 0.15); valid mlm 4.39
at step 500. With the waveform conv front end (`--config.model.feature_encoder=conv`) the
same loss had not left chance after 150 steps.
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
