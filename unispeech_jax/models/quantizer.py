"""Gumbel-softmax product quantizer (wav2vec 2.0 / UniSpeech / SpeechT5 cross-modal).

A frame vector is projected to ``G`` groups of ``V`` logits; each group picks one of its
``V`` codewords (``codevector_dim // G`` wide) and the chosen words are concatenated.

Training picks codewords with a hard Gumbel-softmax sample and passes gradients straight
through the soft sample; evaluation takes the argmax. The returned perplexity follows the
Hugging Face ``Wav2Vec2GumbelVectorQuantizer`` exactly:

* train: perplexity of the batch-averaged *soft* distribution ``softmax(logits)`` (no noise),
  which is what the diversity loss pushes up;
* eval: perplexity of the batch-averaged *hard* (one-hot argmax) distribution, which is what
  HF returns in eval mode (fairseq calls it ``code_perplexity``).

Both variants are also sown into the ``'intermediates'`` collection as ``prob_perplexity``
(soft) and ``code_perplexity`` (hard), for callers that want the other one.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def gumbel_temperature(step, t0: float, t_min: float, decay: float):
    """Gumbel temperature ``max(t0 * decay**step, t_min)``; ``step`` may be a traced int.

    Computed as ``t0 * exp(step * log(decay))`` with ``log(decay)`` taken in float64 when
    ``decay`` is a Python number: ``0.999995`` is not exact in float32 and raising the
    rounded value to the 250k-th power would be off by ~1.5 %.
    """
    if isinstance(decay, (int, float)):
        log_decay = math.log(decay)
    else:
        log_decay = jnp.log(jnp.asarray(decay, jnp.float32))
    step = jnp.asarray(step, jnp.float32)
    return jnp.maximum(t0 * jnp.exp(step * log_decay), t_min)


def _entropy_exp(probs):
    """``exp(-sum_v p log p)`` over the last axis, with ``0 log 0 = 0`` and finite gradients.

    probs: [..., V] -> [...]
    """
    positive = probs > 0
    safe = jnp.where(positive, probs, 1.0)  # keeps log (and its gradient) finite at 0
    return jnp.exp(-jnp.sum(jnp.where(positive, probs * jnp.log(safe), 0.0), axis=-1))


def marginal_perplexity(probs, valid=None):
    """Sum over groups of the perplexity of the code distribution averaged over frames.

    probs: [B, T, G, V] per-frame distributions; valid: [B, T] bool or None (all frames).
    Returns a float32 scalar in ``[G, G*V]``. With no valid frame the marginal is all zeros
    and the result is ``G`` (HF would divide by zero).
    """
    probs = probs.astype(jnp.float32)
    if valid is None:
        marginal = jnp.mean(probs, axis=(0, 1))
    else:
        weights = valid.astype(jnp.float32)[:, :, None, None]
        count = jnp.maximum(jnp.sum(weights), 1.0)
        marginal = jnp.sum(probs * weights, axis=(0, 1)) / count
    return jnp.sum(_entropy_exp(marginal))


def straight_through_gumbel(rng, logits, temperature):
    """Hard Gumbel-softmax sample with the soft sample's gradient.

    logits: [..., V] float32. Returns (probs [..., V] equal to a one-hot in the forward pass,
    ids [...] int32). Same estimator as ``torch.nn.functional.gumbel_softmax(hard=True)``.
    """
    noise = jax.random.gumbel(rng, logits.shape, jnp.float32)
    soft = jax.nn.softmax((logits + noise) / temperature, axis=-1)
    ids = jnp.argmax(soft, axis=-1).astype(jnp.int32)
    hard = jax.nn.one_hot(ids, logits.shape[-1], dtype=soft.dtype)
    # Parenthesised so the forward value is exactly `hard` (soft - soft == 0 exactly), which
    # the contrastive loss's 'distractor equals positive' test relies on.
    return hard + (soft - jax.lax.stop_gradient(soft)), ids


class GumbelVectorQuantizer(nn.Module):
    """Product quantizer with ``num_groups`` codebooks of ``num_vars`` entries each.

    Attributes:
      num_groups: G.
      num_vars: V, entries per group.
      codevector_dim: width of the output (concatenation of G codewords of
        ``codevector_dim // G`` each).
      dtype: compute dtype of the projection and of the output; softmax, sampling and
        perplexity are always float32. Parameters are float32.
    """

    num_groups: int
    num_vars: int
    codevector_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, valid=None, temperature=2.0, train: bool = False):
        """Quantize frames.

        Args:
          x: [B, T, C] input features.
          valid: [B, T] bool, frames that count in the perplexity (None = all).
          temperature: Gumbel temperature (scalar, may be traced); unused at eval.
          train: sample with Gumbel noise (rng stream 'gumbel') instead of argmax.

        Returns:
          codevectors [B, T, codevector_dim] in ``dtype``, perplexity float32 scalar,
          code_ids int32 [B, T, G].
        """
        groups, num_vars = self.num_groups, self.num_vars
        if self.codevector_dim % groups:
            raise ValueError(
                f"codevector_dim {self.codevector_dim} must be divisible by num_groups {groups}"
            )
        word_dim = self.codevector_dim // groups
        batch, length, _ = x.shape

        # Init follows the reference: N(0, 1) projection, zero bias, U[0, 1) codewords.
        logits = nn.Dense(
            groups * num_vars,
            dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.normal(stddev=1.0), ("embed", "codes")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("codes",)),
            name="weight_proj",
        )(x)
        codebook = self.param(
            "codevectors",
            nn.with_logical_partitioning(nn.initializers.uniform(scale=1.0), ("codes", None)),
            (groups * num_vars, word_dim),
            jnp.float32,
        )
        logits = logits.astype(jnp.float32).reshape(batch, length, groups, num_vars)

        soft_probs = jax.nn.softmax(logits, axis=-1)
        if train:
            probs, code_ids = straight_through_gumbel(self.make_rng("gumbel"), logits, temperature)
        else:
            code_ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            probs = jax.nn.one_hot(code_ids, num_vars, dtype=jnp.float32)

        # "code" perplexity uses the noiseless argmax in both modes, as fairseq reports it.
        argmax_ids = jnp.argmax(logits, axis=-1)
        prob_perplexity = marginal_perplexity(soft_probs, valid)
        code_perplexity = marginal_perplexity(
            jax.nn.one_hot(jax.lax.stop_gradient(argmax_ids), num_vars), valid
        )
        self.sow("intermediates", "prob_perplexity", prob_perplexity)
        self.sow("intermediates", "code_perplexity", code_perplexity)
        perplexity = prob_perplexity if train else code_perplexity

        # One matmul per group against its own V x d block: [B,T,G,V] x [G,V,d] -> [B,T,G,d].
        # The forward value is a pure lookup; the matmul carries the straight-through gradient.
        words = jnp.einsum(
            "btgv,gvd->btgd",
            probs.astype(self.dtype),
            codebook.reshape(groups, num_vars, word_dim).astype(self.dtype),
        )
        return words.reshape(batch, length, self.codevector_dim), perplexity, code_ids
