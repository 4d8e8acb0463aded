r"""Tiny SpeechT5 joint pre-training (speech + text) on the embedded eSpeak NG corpus, on CPU.

Command:
    python -m unispeech_jax.train --config configs/speecht5_tiny.py --workdir runs/st5_tiny

Speech batches (masked prediction of 100 k-means MFCC clusters, made on first use and cached in
the corpus folder; mel reconstruction + stop token) and text-infilling batches of the corpus
sentences alternate, half of the steps each; both go through the cross-modal quantizer.
Hardware: 2 CPU cores shared with a timed training run and other engineers' jobs; this run
niced (nice 19) and getting ~20-25 % of one core; float32. Batches: speech 4 x 4 s (16 s of
audio) at the longest bucket, text 4096 tokens (32-64 sentences).
Measured 2026-12-02 (metrics.jsonl; wall minutes include making the k-means labels, ~7 min,
the 5 bucket compiles and a 20-minute SIGSTOP during a benchmark window at step ~75):
  step  wall   speech: mlm  L1    BCE   div   code ppl | text: MLE  div   code ppl
   25    55         4.67   4.00  0.41  0.63    74     |      3.30  0.58    84
   50    60         4.51   3.21  0.19  0.52    93     |      3.01  0.32   136
   75    85         4.51   2.13  0.15  0.46   108     |      2.95  0.19   162
Every part falls and both code perplexities climb (of 200); only ~100 steps fitted in the
time on this machine, so masked prediction has barely started (mlm accuracy 0.026 -> 0.038).
Under ~12 s/step (speech and text steps averaged) when not paused; a quiet machine is far
faster (a run of the lost first wiring did 830 steps in 12 min).
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
    d.labels = ''  # no phone transcripts: pre-training reads km, mel and text
    d.max_label_len = 16
    d.max_sample_len = 64_000
    d.bucket_boundaries = (32_000, 48_000, 64_000)
    d.max_samples_per_batch = 256_000
    d.batch_multiple = 4
    d.num_parallel_calls = 2
    d.km_labels = 'km'
    d.km_clusters = 100
    d.log_mel = True
    d.text_ratio = 0.5
    d.text_bucket_boundaries = (64, 128)
    d.max_tokens_per_batch = 4096

    c.model = speecht5.default_config()
    m = c.model
    # Narrow first convs, as configs/tiny.py: they dominate the cost at high frame rates.
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
