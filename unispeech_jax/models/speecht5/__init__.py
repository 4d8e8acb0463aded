"""SpeechT5 (arXiv 2110.07205): one encoder–decoder Transformer with modality pre/post-nets.

    speech [B,S] ─ speech-encoder pre-net ─┐                      ┌─ text-decoder pre/post-net → logits [B,L,V]
                                           ├─ encoder [B,T,D] ─ (cross-modal VQ) ─ decoder ─┤
    text  [B,L]  ─ text-encoder pre-net ───┘                      └─ speech-decoder pre/post-net → mel, stop

Parameter names and every numerical detail follow Hugging Face `SpeechT5For{SpeechToText,
TextToSpeech,SpeechToSpeech}` so that `convert/hf_speecht5.py` is a rename table:

  * speech-encoder pre-net: the wav2vec 2.0 conv feature encoder and feature projection
    (layers.py), optional time mask embedding, positional conv (added, padding frames are *not*
    zeroed first, as HF), then fixed sinusoidal positions of the fairseq kind (sin | cos halves,
    position ids start at pad_token_id + 1, padding frames get a zero vector; HF derives
    them from the padding flags compared with pad_token_id, reproduced for ids other than 1).
  * text-encoder pre-net: token embedding + alpha · (interleaved sin/cos table) + dropout.
  * encoder: LN → dropout → post-LN blocks. Every block's attention adds a Shaw-style relative
    position term on keys: logits[i, j] += (q_i / sqrt(d_h)) · E[clip(i − j, −M, M − 1) + M],
    E [2M, d_h] shared by all layers and heads (M = encoder_max_relative_position).
  * decoder: post-LN blocks with causal self-attention, cross-attention, FFN. Incremental
    decoding takes an explicit cache pytree (`init_cache`; the encoder output's cross-attention
    keys/values are projected once, at the first step) and equals full-sequence decoding.
  * text-decoder pre-net: embedding · (sqrt(D) if scale_embedding) + fairseq sinusoidal
    positions; post-net: output projection tied to the same embedding (no bias). One text
    embedding is shared by the text-encoder pre-net, text-decoder pre-net and output projection
    (as the paper's shared text embedding; HF keeps one per model class).
  * speech-decoder pre-net: n × (Dense(units) → ReLU → dropout that is also on at inference
    (Tacotron 2), mask shared by the batch) → Dense(D) → + alpha · table → dropout → concat the
    L2-normalised speaker embedding → Dense(D) → ReLU. The always-on dropout is controlled by
    the explicit `prenet_dropout` flag (rng stream 'prenet') so evaluation can be deterministic.
  * speech-decoder post-net: Dense → r mel frames per step, Dense → r stop logits, then a
    conv post-net (Conv1d no bias → BatchNorm → tanh (not on the last) → dropout) added as a
    residual. BatchNorm statistics live in the 'batch_stats' collection.
  * cross-modal vector quantizer (pre-training only; HF has none): Gumbel VQ (quantizer.py) on
    the encoder output with codewords of width D, and a random `vq_replace_prob` fraction of
    valid positions replaced by their quantized vectors before cross-attention (rng 'vq').
    The perplexity it returns feeds the diversity loss.
  * masked-prediction head (pre-training only; HF has none): HuBERT-style cosine logits
    between `final_proj(encoder output)` and one embedding per k-means cluster, / `logit_temp`.

Objectives (`loss_fn`, chosen by `task`): joint pre-training (SPEC §3), and the fine-tuning
tasks 'asr' and 'tts' with the losses of HF's SpeechT5ForSpeechToText / SpeechT5ForTextToSpeech
(`decoding.speecht5.recognize` transcribes), and 'vc' / 'se' (SpeechT5ForSpeechToSpeech with
TTS's loss; `decoding.speecht5.convert` generates).

Shapes: B batch, S samples, T encoder frames/tokens, L decoder steps, D model dim, M mel bins,
r reduction factor. `train=False` turns off every dropout and layerdrop and makes BatchNorm use
its running statistics. `scan_layers` (default) runs each stack as one `nn.scan` (one compiled
layer, params under `layers` with a leading layer axis); `remat` sets what each layer's backward
pass recomputes.

Files, one concept each (this module re-exports their public names):
  args.py ModelArgs and TASKS · positions.py position tables · encoder_decoder.py encoder,
  decoder (blocks of ../transformer.py), init_cache · prenets.py / postnets.py speech nets ·
  model.py the SpeechT5 module, build, check_config, init_variables, vocab_size,
  resolve_config, dummy_batch ·
  targets.py teacher-forcing inputs and targets · apply.py running a forward inside a loss ·
  pretrain.py the joint pre-training loss · tasks/ one module per fine-tuning task and its loss ·
  objective.py loss_fn · flops.py analytic FLOPs.
"""

from unispeech_jax.models.speecht5.args import LOGICAL_AXES, TASKS, ModelArgs, default_config
from unispeech_jax.models.speecht5.encoder_decoder import Decoder, Encoder, init_cache
from unispeech_jax.models.speecht5.flops import flops_per_batch, forward_flops
from unispeech_jax.models.speecht5.model import (
    VOCAB_PARAMS,
    SpeechT5,
    build,
    check_config,
    dummy_batch,
    init_variables,
    resolve_config,
    vocab_size,
)
from unispeech_jax.models.speecht5.objective import loss_fn
from unispeech_jax.models.speecht5.positions import (
    RelativePositionalEncoding,
    ScaledPositionalEncoding,
    fairseq_sinusoidal,
    padded_position_ids,
    relative_position_ids,
    scaled_position_table,
)
from unispeech_jax.models.speecht5.postnets import PostnetConv, SpeechDecoderPostnet
from unispeech_jax.models.speecht5.prenets import SpeechDecoderPrenet, SpeechEncoderPrenet
from unispeech_jax.models.speecht5.targets import (
    shift_spectrograms_right,
    speech_targets,
    text_targets,
)
from unispeech_jax.models.speecht5.tasks.spectrogram import cross_attention_probs
from unispeech_jax.models.transformer import Attention

__all__ = [
    "LOGICAL_AXES",
    "TASKS",
    "VOCAB_PARAMS",
    "Attention",
    "Decoder",
    "Encoder",
    "ModelArgs",
    "PostnetConv",
    "RelativePositionalEncoding",
    "ScaledPositionalEncoding",
    "SpeechDecoderPostnet",
    "SpeechDecoderPrenet",
    "SpeechEncoderPrenet",
    "SpeechT5",
    "build",
    "check_config",
    "cross_attention_probs",
    "default_config",
    "dummy_batch",
    "fairseq_sinusoidal",
    "flops_per_batch",
    "forward_flops",
    "init_cache",
    "init_variables",
    "loss_fn",
    "padded_position_ids",
    "relative_position_ids",
    "resolve_config",
    "scaled_position_table",
    "shift_spectrograms_right",
    "speech_targets",
    "text_targets",
    "vocab_size",
]
