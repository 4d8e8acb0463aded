"""Losses against small brute-force numpy computations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.losses import (
    contrastive_loss,
    ctc_feasible,
    ctc_loss,
    diversity_loss,
    mix_ctc_inputs,
)


def _cos(a, b):
    return a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)


def _contrastive_reference(context, targets, negatives, mask, temperature):
    """Loop-by-loop InfoNCE as in fairseq: cosine/temperature, duplicates of the positive -inf."""
    total, correct = 0.0, 0
    for b, t in zip(*np.nonzero(mask)):
        pos = targets[b, t]
        logits = [_cos(context[b, t], pos) / temperature]
        for s in negatives[b, t]:
            same = np.array_equal(targets[b, s], pos)
            logits.append(-np.inf if same else _cos(context[b, t], targets[b, s]) / temperature)
        logits = np.array(logits)
        top = logits.max()
        total += np.log(np.exp(logits - top).sum()) + top - logits[0]
        correct += logits[0] > logits[1:].max()
    return total, mask.sum(), correct / max(mask.sum(), 1)


def _contrastive_case():
    rng = np.random.default_rng(0)
    b, t, d, k = 2, 7, 5, 4
    context = rng.normal(size=(b, t, d)).astype(np.float32)
    targets = rng.normal(size=(b, t, d)).astype(np.float32)
    targets[0, 4] = targets[0, 1]  # a distractor equal to the positive
    negatives = rng.integers(0, t, size=(b, t, k)).astype(np.int32)
    negatives[0, 1, 0] = 4
    negatives[1, 2] = 2  # every distractor is the frame itself: zero loss
    mask = rng.random((b, t)) < 0.6
    mask[0, 1] = mask[1, 2] = True
    return context, targets, negatives, mask


def test_contrastive_matches_reference():
    context, targets, negatives, mask = _contrastive_case()
    got = jax.jit(contrastive_loss, static_argnums=4)(context, targets, negatives, mask, 0.1)
    want = _contrastive_reference(context, targets, negatives, mask, 0.1)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    assert float(got[1]) == want[1]
    np.testing.assert_allclose(got[2], want[2], rtol=1e-6)


def test_contrastive_gradients_finite_and_bf16_inputs():
    context, targets, negatives, mask = _contrastive_case()
    context[0, 0] = 0.0  # zero vector: cosine eps keeps it finite
    grads = jax.jit(
        jax.grad(lambda c, q: contrastive_loss(c, q, negatives, mask, 0.1)[0], argnums=(0, 1))
    )(jnp.asarray(context), jnp.asarray(targets))
    assert all(np.all(np.isfinite(g)) for g in grads)
    loss_fn = jax.jit(contrastive_loss, static_argnums=4)
    loss_bf16 = loss_fn(
        jnp.asarray(context, jnp.bfloat16), jnp.asarray(targets, jnp.bfloat16), negatives, mask, 0.1
    )
    loss_f32 = loss_fn(context, targets, negatives, mask, 0.1)
    assert loss_bf16[0].dtype == jnp.float32
    np.testing.assert_allclose(loss_bf16[0], loss_f32[0], rtol=0.05)


def test_contrastive_with_nothing_masked():
    context, targets, negatives, mask = _contrastive_case()
    loss, count, acc = contrastive_loss(context, targets, negatives, np.zeros_like(mask), 0.1)
    assert float(loss) == 0.0 and float(count) == 0.0 and float(acc) == 0.0


def test_diversity_loss():
    np.testing.assert_allclose(diversity_loss(640.0, 640), 0.0)
    np.testing.assert_allclose(diversity_loss(jnp.float32(2.0), 640), 638 / 640)


def _ctc_reference(log_probs, labels, blank=0):
    """-log of the summed probability of every frame path that collapses to ``labels``."""
    frames, classes = log_probs.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=frames):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == list(labels):
            total += np.exp(sum(log_probs[i, c] for i, c in enumerate(path)))
    return -np.log(total)


def test_ctc_matches_brute_force_with_padding():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 6, 4)).astype(np.float32)
    logit_valid = _prefix([6, 5, 4], 6)
    labels = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]], np.int32)
    label_valid = _prefix([3, 2, 1], 3)
    got = jax.jit(ctc_loss)(logits, logit_valid, labels, label_valid)
    for b, (n, m) in enumerate([(6, 3), (5, 2), (4, 1)]):
        log_probs = jax.nn.log_softmax(logits[b, :n].astype(np.float64), -1)
        np.testing.assert_allclose(
            got[b], _ctc_reference(np.asarray(log_probs), labels[b, :m]), rtol=1e-4
        )


def test_ctc_unlabelled_and_infeasible_examples():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(3, 4, 5)).astype(np.float32))
    logit_valid = _prefix([4, 4, 4], 4)
    labels = np.array([[1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 2, 3]], np.int32)
    label_valid = _prefix([2, 0, 5], 5)
    feasible = np.asarray(ctc_feasible(logit_valid, labels, label_valid))
    np.testing.assert_array_equal(feasible, [True, True, False])
    # A repeated label needs a blank between its copies: [1, 1] fits 3 frames, not 2.
    assert ctc_feasible(_prefix([3], 4), np.array([[1, 1]]), _prefix([2], 2))[0]
    assert not ctc_feasible(_prefix([2], 4), np.array([[1, 1]]), _prefix([2], 2))[0]

    loss_fn = jax.jit(ctc_loss, static_argnames="zero_infeasible")
    loss = loss_fn(logits, logit_valid, labels, label_valid)
    assert float(loss[0]) > 0 and float(loss[1]) == 0.0 and float(loss[2]) == 0.0
    raw = loss_fn(logits, logit_valid, labels, label_valid, zero_infeasible=False)
    assert np.isfinite(raw[2]) and raw[2] > 1e3
    grads = jax.jit(jax.grad(lambda x: ctc_loss(x, logit_valid, labels, label_valid).sum()))(logits)
    assert np.all(np.isfinite(grads))
    np.testing.assert_array_equal(grads[1:], 0.0)


def test_mix_ctc_inputs_fraction():
    context = jnp.zeros((8, 500, 3))
    quantized = jnp.ones((8, 500, 3), jnp.bfloat16)
    mixed = mix_ctc_inputs(jax.random.key(0), context, quantized, 0.3)
    assert mixed.shape == context.shape and mixed.dtype == context.dtype
    picked = np.asarray(mixed[..., 0])
    assert np.all(mixed == picked[..., None])  # whole frames are swapped
    assert abs(picked.mean() - 0.3) < 0.02  # std of the mean ~0.007
    assert float(mix_ctc_inputs(jax.random.key(0), context, quantized, 0.0).sum()) == 0.0


def _prefix(lengths, size):
    return np.arange(size)[None, :] < np.asarray(lengths)[:, None]
