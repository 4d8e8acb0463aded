"""Analytic SpeechT5 FLOPs (matmuls and convolutions, 2 per multiply-add)."""

from __future__ import annotations

from unispeech_jax.models import layers
from unispeech_jax.models.speecht5.args import ModelArgs


def _encoder_flops(a: ModelArgs, batch: int, length: int) -> float:
    """Encoder matmul FLOPs: projections, attention with the relative term, FFN."""
    d, bt = a.hidden_size, batch * length
    attention = 3 * 2.0 * batch * length * length * d  # logits, relative logits, weighted sum
    per_layer = 2.0 * bt * d * d * 4 + attention + 2.0 * bt * d * a.encoder_ffn_dim * 2
    return a.encoder_layers * per_layer


def _decoder_flops(a: ModelArgs, batch: int, steps: int, memory: int) -> float:
    """Decoder matmul FLOPs: self-attention over all `steps` keys (teacher forcing, or a cache of
    `steps` slots), cross-attention over `memory` with its keys/values projected once, FFN."""
    d, bl = a.hidden_size, batch * steps
    self_attn = 2.0 * bl * d * d * 4 + 2 * 2.0 * batch * steps * steps * d
    cross = 2.0 * bl * d * d * 2 + 2.0 * batch * memory * d * d * 2
    cross += 2 * 2.0 * batch * steps * memory * d
    return a.decoder_layers * (self_attn + cross + 2.0 * bl * d * a.decoder_ffn_dim * 2)


def _speech_prenet_flops(a: ModelArgs, batch: int, samples: int) -> tuple[float, int]:
    """(FLOPs, frames T) of the speech-encoder pre-net: conv stack, projection, positional conv."""
    t = int(layers.conv_output_lengths(samples, a.conv_kernel, a.conv_stride))
    d, bt = a.hidden_size, batch * t
    flops = layers.feature_encoder_flops(a, batch, samples)
    flops += 2.0 * bt * a.conv_dim[-1] * d  # feature projection
    flops += 2.0 * bt * d * (d / a.num_conv_pos_embedding_groups) * a.num_conv_pos_embeddings
    return flops, t


def _speech_decoder_nets_flops(a: ModelArgs, batch: int, steps: int, speaker: bool) -> float:
    """Speech-decoder pre-net (+ the speaker projection), frame/stop projections, post-net."""
    d, m, c, r = a.hidden_size, a.num_mel_bins, a.speech_decoder_postnet_units, a.reduction_factor
    units = a.speech_decoder_prenet_units
    prenet = m * units + units * units * (a.speech_decoder_prenet_layers - 1) + units * d
    prenet += (d + a.speaker_embedding_dim) * d if speaker else 0
    convs = m * c + c * c * (a.speech_decoder_postnet_layers - 2) + c * m
    postnet = steps * r * a.speech_decoder_postnet_kernel * convs
    return 2.0 * batch * (steps * (prenet + d * (m + 1) * r) + postnet)


def forward_flops(model_cfg, batch_shapes) -> float:
    """Analytic FLOPs of one forward pass of `task` on a batch of shapes {key: shape}.

    pretrain: a speech batch ('audio' (B,S), 'mel' (B,F,M)) or a text batch ('text' (B,L),
    'text_source'); asr: 'audio', 'text'; tts: 'text', 'mel'; vc, se: 'audio', 'mel'. Not counted: norms,
    activations, softmax, and the text output projection (the vocabulary size is not in the
    shapes; tiny next to D²). A TTS/VC/SE batch with 'speaker_embedding' adds its projection.
    """
    a = ModelArgs.from_config(model_cfg)
    d, codes = a.hidden_size, a.num_codevector_groups * a.num_codevectors_per_group
    quantizer = lambda b, t: 2.0 * b * t * d * codes * 2  # logits and codeword lookup
    if a.task == "tts":
        b, length = batch_shapes["text"][:2]
        steps = batch_shapes["mel"][1] // a.reduction_factor
        return (
            _encoder_flops(a, b, length)
            + _decoder_flops(a, b, steps, length)
            + _speech_decoder_nets_flops(a, b, steps, "speaker_embedding" in batch_shapes)
        )
    if a.task == "pretrain" and "text_source" in batch_shapes:
        b, steps = batch_shapes["text"][:2]
        length = batch_shapes["text_source"][1]
        return (
            _encoder_flops(a, b, length)
            + quantizer(b, length)
            + _decoder_flops(a, b, steps, length)
        )
    b, samples = batch_shapes["audio"][:2]
    flops, t = _speech_prenet_flops(a, b, samples)
    flops += _encoder_flops(a, b, t)
    if a.task in ("asr", "st"):
        return flops + _decoder_flops(a, b, batch_shapes["text"][1], t)
    if a.task == "sid":  # the pooled head's two projections, once per utterance
        e = a.speaker_embedding_dim
        return flops + 2.0 * b * (d * e + e * max(a.num_speakers, 1))
    steps = batch_shapes["mel"][1] // a.reduction_factor
    if a.task in ("vc", "se"):
        speaker = "speaker_embedding" in batch_shapes
        return (
            flops
            + _decoder_flops(a, b, steps, t)
            + _speech_decoder_nets_flops(a, b, steps, speaker)
        )
    flops += 2.0 * b * t * (d * a.final_dim + a.final_dim * a.num_clusters)  # cluster logits
    flops += quantizer(b, t)
    return flops + _decoder_flops(a, b, steps, t) + _speech_decoder_nets_flops(a, b, steps, False)


def flops_per_batch(model_cfg, batch_shapes) -> float:
    """Analytic FLOPs of one training step: 3 × `forward_flops` (forward + backward)."""
    return 3.0 * forward_flops(model_cfg, batch_shapes)
