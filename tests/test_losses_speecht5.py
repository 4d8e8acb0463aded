"""SpeechT5 losses (losses.py) against their torch / Hugging Face definitions on random data."""

import hf_deps
import jax.numpy as jnp
import numpy as np
import pytest

from unispeech_jax import losses

torch = hf_deps.load("torch")


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_spectrogram_loss_matches_hf_speecht5_loss():
    transformers = hf_deps.load("transformers")
    from transformers.models.speecht5.modeling_speecht5 import SpeechT5SpectrogramLoss

    rng = _rng(1)
    b, n, m = 3, 10, 4
    before, after, target = (rng.standard_normal((b, n, m)).astype(np.float32) for _ in range(3))
    stop = rng.standard_normal((b, n)).astype(np.float32)
    lengths = np.array([10, 7, 3])
    valid = np.arange(n)[None, :] < lengths[:, None]
    labels = np.where(valid[..., None], target, -100.0).astype(np.float32)
    config = transformers.SpeechT5Config(use_guided_attention_loss=False)
    want = SpeechT5SpectrogramLoss(config)(
        None,
        torch.from_numpy(before),
        torch.from_numpy(after),
        torch.from_numpy(stop),
        torch.from_numpy(labels),
    )
    l1, bce = losses.spectrogram_loss(before, after, stop, target, valid)
    np.testing.assert_allclose(float(l1 + bce), float(want), rtol=1e-5)
    np.testing.assert_array_equal(losses.stop_labels(valid).sum(1), [1, 1, 1])
    assert float(losses.stop_labels(valid)[1, 6]) == 1.0


def test_bce_pos_weight_matches_torch():
    rng = _rng(2)
    logits = rng.standard_normal((2, 6)).astype(np.float32)
    valid = np.ones((2, 6), bool)
    labels = np.array(losses.stop_labels(valid))
    want = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(5.0))(
        torch.from_numpy(logits), torch.from_numpy(labels)
    )
    zeros = np.zeros((2, 6, 1), np.float32)
    _, bce = losses.spectrogram_loss(zeros, zeros, logits, zeros, valid)
    np.testing.assert_allclose(float(bce), float(want), rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_text_nll_matches_torch_cross_entropy(smoothing):
    rng = _rng(3)
    logits = rng.standard_normal((2, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, (2, 5))
    valid = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    torch_labels = torch.from_numpy(np.where(valid, labels, -100))
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits).reshape(-1, 7),
        torch_labels.reshape(-1),
        label_smoothing=smoothing,
    )
    got = losses.text_nll_loss(logits, labels, valid, label_smoothing=smoothing)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)


def test_masked_prediction_loss_counts_only_masked_frames():
    rng = _rng(4)
    logits = rng.standard_normal((2, 6, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (2, 6))
    mask = np.zeros((2, 6), bool)
    mask[0, 1:3] = mask[1, 4] = True
    loss, accuracy = losses.masked_prediction_loss(logits, targets, mask)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss), -picked[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(accuracy), (logits.argmax(-1) == targets)[mask].mean())
    # changing an unmasked frame changes nothing; no masked frame gives 0, not NaN
    logits[1, 0] += 3.0
    assert float(losses.masked_prediction_loss(logits, targets, mask)[0]) == pytest.approx(
        float(loss)
    )
    assert float(losses.masked_prediction_loss(logits, targets, jnp.zeros_like(mask))[0]) == 0.0


def test_guided_attention_loss_matches_hf():
    transformers = hf_deps.load("transformers")
    from transformers.models.speecht5.modeling_speecht5 import SpeechT5GuidedMultiheadAttentionLoss

    rng = _rng(3)
    b, h, o, i = 3, 4, 7, 5
    probs = rng.random((b, h, o, i)).astype(np.float32)
    in_valid = np.arange(i)[None, :] < np.array([[5], [3], [4]])
    out_valid = np.arange(o)[None, :] < np.array([[7], [6], [2]])
    config = transformers.SpeechT5Config(
        guided_attention_loss_sigma=0.4, guided_attention_loss_scale=1.0
    )
    want = SpeechT5GuidedMultiheadAttentionLoss(config)(
        torch.from_numpy(probs), torch.from_numpy(in_valid), torch.from_numpy(out_valid)
    )
    got = losses.guided_attention_loss(probs, in_valid, out_valid, 0.4)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
