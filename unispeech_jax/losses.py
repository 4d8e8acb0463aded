"""Losses of UniSpeech (contrastive InfoNCE, codebook diversity, CTC, the mixed-CTC input) and
SpeechT5 (masked prediction, spectrogram L1 + stop-token BCE, text MLE, guided attention).

All losses compute in float32 whatever the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

_COSINE_EPS = 1e-8  # torch.cosine_similarity's default


def _unit(x):
    """L2-normalise the last axis with a floor on the norm.

    The floor is applied to the squared norm, before the square root, so that a zero vector
    has a finite gradient too (sqrt has an infinite slope at 0).
    """
    squared = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(squared, _COSINE_EPS**2))


def negative_similarities(context_unit, targets_unit, negatives_idx):
    """Cosine similarity of each frame's context with its distractor targets.

    context_unit, targets_unit: [B, T, D] unit vectors; negatives_idx: [B, T, K].
    Returns [B, T, K] float32.

    Computed as a [B, T, T] Gram matrix followed by a gather, instead of gathering the
    distractors as [B, T, K, D]: T*T is far smaller than T*K*D at our sizes (T ~ 1000,
    K = 100, D >= 256), and the backward pass is one more matmul.
    """
    gram = jnp.einsum(
        "btd,bsd->bts", context_unit, targets_unit, precision=jax.lax.Precision.HIGHEST
    )
    return jnp.take_along_axis(gram, negatives_idx, axis=2)


def negatives_equal_positive(targets, negatives_idx):
    """True where a distractor's target vector is exactly the positive one.

    targets: [B, T, D]; negatives_idx: [B, T, K]. Returns bool [B, T, K].
    Loops over K so memory stays at [B, T, D]; no gradient flows here.
    """
    targets = jax.lax.stop_gradient(targets)

    def one(idx):  # idx: [B, T]
        other = jnp.take_along_axis(targets, idx[:, :, None], axis=1)
        return jnp.all(other == targets, axis=-1)

    return jnp.moveaxis(jax.lax.map(one, jnp.moveaxis(negatives_idx, 2, 0)), 0, 2)


def contrastive_logits(context, targets, negatives_idx, temperature: float):
    """InfoNCE logits ``[positive, K distractors]`` = cosine / temperature.

    context, targets: [B, T, D]; negatives_idx: [B, T, K] frame indices into ``targets``.
    Returns float32 [B, T, 1 + K]; a distractor equal to the positive is ``-inf``.
    """
    context = context.astype(jnp.float32)
    targets = targets.astype(jnp.float32)
    context_unit, targets_unit = _unit(context), _unit(targets)
    positive = jnp.sum(context_unit * targets_unit, axis=-1, keepdims=True)
    negative = negative_similarities(context_unit, targets_unit, negatives_idx)
    logits = jnp.concatenate([positive, negative], axis=-1) / temperature
    same = negatives_equal_positive(targets, negatives_idx)
    blocked = jnp.concatenate([jnp.zeros_like(same[..., :1]), same], axis=-1)
    return jnp.where(blocked, -jnp.inf, logits)


def contrastive_loss(context, targets, negatives_idx, mask, temperature: float):
    """Summed InfoNCE loss over masked frames (wav2vec 2.0 / UniSpeech).

    Args:
      context: [B, T, D] predictions (projected Transformer output).
      targets: [B, T, D] quantized targets (projected).
      negatives_idx: [B, T, K] distractor frame indices (see ``masking.sample_negatives``).
      mask: [B, T] bool, frames that count.
      temperature: kappa (0.1).
    Returns:
      (loss_sum: float32 scalar, cross-entropy with target 0 summed over masked frames;
       num_masked: float32 scalar;
       accuracy: float32 scalar, fraction of masked frames whose positive logit is strictly
       above every distractor, 0 when nothing is masked).
    """
    mask = mask.astype(bool)
    logits = contrastive_logits(context, targets, negatives_idx, temperature)
    # The positive is always finite, so logsumexp is finite even when all K are -inf.
    per_frame = jax.nn.logsumexp(logits, axis=-1) - logits[..., 0]
    loss_sum = jnp.sum(jnp.where(mask, per_frame, 0.0))
    num_masked = jnp.sum(mask, dtype=jnp.float32)
    correct = logits[..., 0] > jnp.max(logits[..., 1:], axis=-1)
    accuracy = jnp.sum(correct & mask, dtype=jnp.float32) / jnp.maximum(num_masked, 1.0)
    return loss_sum, num_masked, accuracy


def diversity_loss(perplexity, num_codes):
    """Codebook diversity ``(G*V - perplexity) / (G*V)``; 0 when all codes are used evenly."""
    return (num_codes - perplexity) / num_codes


def ctc_feasible(logit_valid, labels, label_valid):
    """Whether a CTC alignment exists: frames >= labels + number of adjacent repeats.

    A repeated label needs a blank between its copies, hence the extra frames.
    logit_valid: [B, T] bool; labels: [B, L] int; label_valid: [B, L] bool. Returns bool [B].
    """
    label_valid = label_valid.astype(bool)
    n_frames = jnp.sum(logit_valid, axis=1)
    n_labels = jnp.sum(label_valid, axis=1)
    repeats = (labels[:, 1:] == labels[:, :-1]) & label_valid[:, 1:] & label_valid[:, :-1]
    return n_frames >= n_labels + jnp.sum(repeats, axis=1)


def ctc_loss(logits, logit_valid, labels, label_valid, blank_id: int = 0, zero_infeasible=True):
    """Per-example CTC negative log-likelihood (optax), float32.

    Args:
      logits: [B, T, C] unnormalised scores.
      logit_valid: [B, T] bool, True on real frames.
      labels: [B, L] int32 label ids (padding value irrelevant).
      label_valid: [B, L] bool, True on real labels.
      blank_id: CTC blank.
      zero_infeasible: also zero the loss of examples whose labels cannot be aligned to their
        frames (see ``ctc_feasible``; like torch's ``zero_infinity``). When False, optax
        returns a huge but finite value for them (it uses log(0) = -1e5).
    Returns:
      [B] float32 losses. Examples with no label (unlabelled data) get exactly 0 and zero
      gradient; use ``ctc_feasible`` to count the infeasible ones.
    """
    logits = logits.astype(jnp.float32)
    label_valid = label_valid.astype(bool)
    # optax convention: paddings are 1.0 on padded positions.
    logit_paddings = 1.0 - logit_valid.astype(jnp.float32)
    label_paddings = 1.0 - label_valid.astype(jnp.float32)
    per_example = optax.ctc_loss(
        logits, logit_paddings, labels.astype(jnp.int32), label_paddings, blank_id=blank_id
    )
    keep = jnp.any(label_valid, axis=1)
    if zero_infeasible:
        keep &= ctc_feasible(logit_valid, labels, label_valid)
    return jnp.where(keep, per_example, 0.0)


def mix_ctc_inputs(rng, context, quantized, prob: float):
    """UniSpeech mixed CTC: each frame independently becomes its quantized vector w.p. ``prob``.

    context, quantized: [B, T, D]. Returns [B, T, D] in ``context``'s dtype.
    """
    pick = jax.random.bernoulli(rng, prob, context.shape[:2])
    return jnp.where(pick[:, :, None], quantized.astype(context.dtype), context)


# --------------------------------------------------------------------------------------------
# SpeechT5 (masked prediction, spectrogram reconstruction, stop token, text MLE)
# --------------------------------------------------------------------------------------------


def _masked_mean(values, mask):
    """Mean of `values` where `mask` (same shape) is True; 0 when nothing is selected."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_prediction_loss(logits, targets, mask):
    """HuBERT-style cross-entropy at masked frames, averaged over them.

    logits: [B, T, C] (SpeechT5's cosine logits over k-means clusters); targets: int [B, T];
    mask: bool [B, T] frames that count (masked and valid). Returns (loss, accuracy) scalars.
    """
    logits = logits.astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return _masked_mean(nll, mask), _masked_mean(correct, mask)


def stop_labels(frame_valid):
    """Stop-token targets from bool [B, N] frame validity: 1.0 at each utterance's last real
    frame, 0.0 elsewhere (right padding assumed)."""
    valid = frame_valid.astype(bool)
    next_valid = jnp.pad(valid[:, 1:], ((0, 0), (0, 1)))
    return (valid & ~next_valid).astype(jnp.float32)


def spectrogram_loss(mel_before, mel_after, stop_logits, target, frame_valid, pos_weight=5.0):
    """SpeechT5 speech-decoder loss: L1(before post-net) + L1(after) and the stop-token BCE.

    mel_before, mel_after, target: [B, N, M]; stop_logits: [B, N]; frame_valid: bool [B, N].
    L1 terms average over the valid frames' mel bins; the BCE averages over valid frames with
    the positive (stop) term weighted by `pos_weight`, so the one stop frame per utterance is
    not drowned by the others. Returns (l1, bce) float32 scalars.
    """
    target = target.astype(jnp.float32)
    bins = jnp.broadcast_to(frame_valid[..., None], target.shape)
    l1 = _masked_mean(jnp.abs(mel_before.astype(jnp.float32) - target), bins) + _masked_mean(
        jnp.abs(mel_after.astype(jnp.float32) - target), bins
    )
    x = stop_logits.astype(jnp.float32)
    y = stop_labels(frame_valid)
    bce = -(pos_weight * y * jax.nn.log_sigmoid(x) + (1.0 - y) * jax.nn.log_sigmoid(-x))
    return l1, _masked_mean(bce, frame_valid)


def text_nll_loss(logits, labels, label_valid, label_smoothing: float = 0.0):
    """Token-level cross-entropy (MLE) averaged over valid target tokens.

    logits: [B, L, V]; labels: int [B, L]; label_valid: bool [B, L]. With label_smoothing ε
    the target is (1 − ε)·one-hot + ε/V (uniform), as torch's CrossEntropyLoss does.
    """
    logits = logits.astype(jnp.float32)
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return _masked_mean(optax.softmax_cross_entropy(logits, targets), label_valid)


def guided_attention_loss(probs, input_valid, output_valid, sigma: float):
    """Guided attention (Tachibana et al., arXiv 1710.08969): penalises cross-attention far
    from the diagonal, so that text-to-speech learns a monotonic alignment early.

    probs: [B, H, O, I] attention of O decoder steps over I encoder positions; input_valid
    bool [B, I], output_valid bool [B, O] (right-padded). With each example's lengths I_b,
    O_b the weight of (o, i) is 1 − exp(−(i/I_b − o/O_b)² / 2σ²); the loss is the mean of
    weight · probs over the H heads and the valid (o, i) pairs of the batch.
    """
    input_valid, output_valid = input_valid.astype(bool), output_valid.astype(bool)
    in_len = jnp.sum(input_valid, -1, dtype=jnp.float32)[:, None, None]
    out_len = jnp.sum(output_valid, -1, dtype=jnp.float32)[:, None, None]
    i = jnp.arange(input_valid.shape[1], dtype=jnp.float32)[None, None, :] / jnp.maximum(in_len, 1)
    o = jnp.arange(output_valid.shape[1], dtype=jnp.float32)[None, :, None] / jnp.maximum(
        out_len, 1
    )
    weight = 1.0 - jnp.exp(-((i - o) ** 2) / (2.0 * sigma**2))
    pairs = output_valid[:, :, None] & input_valid[:, None, :]
    pairs = jnp.broadcast_to(pairs[:, None], probs.shape)
    return _masked_mean(probs.astype(jnp.float32) * weight[:, None], pairs)
