"""Batched mel generation: the stop rule per utterance on a toy step function, and SpeechT5
synthesis on a tiny random model (incremental == teacher-forced, batched == one at a time)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import test_decoding_speecht5

from unispeech_jax.decoding import speech
from unispeech_jax.decoding import speecht5 as st5_decoding
from unispeech_jax.models import speecht5

R, M = 2, 3
# Per utterance: the first step (1-based) whose stop probabilities are high, and how high each
# of the r probabilities is then. 0.3 + 0.3 ≥ 0.5: HF's rule sums them. Utterance 2 never stops.
STOP_AT = np.array([2, 3, 99, 1])
STOP_PROB = np.array([0.99, 0.3, 0.99, 0.99])


def _toy_step(frame, state, rng):
    """Each step's frames are the previous frame + 1: the mel is a ramp 1, 1, 2, 2, … ."""
    n = state + 1
    high = n[:, None] >= jnp.asarray(STOP_AT)[:, None]
    p = jnp.where(high, jnp.asarray(STOP_PROB)[:, None], 0.01) * jnp.ones((1, R))
    return jnp.repeat(frame + 1.0, R, axis=1), jnp.log(p / (1 - p)), n


def _generate(**kw):
    return jax.jit(
        lambda: speech.generate(
            _toy_step,
            jnp.zeros((4,), jnp.int32),
            batch=4,
            num_mel_bins=M,
            reduction_factor=R,
            max_steps=6,
            rng=jax.random.key(0),
            **kw,
        )
    )()


def test_each_utterance_stops_at_its_threshold_and_at_max_length():
    for min_steps, want in [(0, [4, 6, 12, 2]), (3, [6, 6, 12, 6])]:
        out = _generate(min_steps=min_steps)
        lengths = np.asarray(out["lengths"])
        np.testing.assert_array_equal(lengths, want)
        ramp = np.repeat(np.arange(1, 7), R).astype(np.float32)
        frames = np.arange(12)[None, :] < lengths[:, None]
        np.testing.assert_array_equal(np.asarray(out["mel"])[..., 0], np.where(frames, ramp, 0))
        assert np.all(np.asarray(out["stop_probs"])[~frames] == 0)
    # One probability of 0.3 per frame is not enough when the threshold is above their sum.
    assert np.asarray(_generate(threshold=0.7)["lengths"])[1] == 12


@functools.cache
def _tts():
    module, variables = test_decoding_speecht5._model()
    rng = np.random.default_rng(5)
    tokens = rng.integers(3, test_decoding_speecht5.VOCAB, (3, 7)).astype(np.int32)
    mask = np.arange(7)[None, :] < np.array([[7], [4], [6]])
    speaker = rng.standard_normal((3, module.args.speaker_embedding_dim)).astype(np.float32)
    return module, variables, tokens, mask, speaker


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("max_frames", "threshold"))
def _synthesize(module, variables, tokens, mask, speaker, rng, **kw):
    return st5_decoding.synthesize(module, variables, tokens, mask, speaker, rng=rng, **kw)


def test_incremental_generation_equals_teacher_forcing():
    """Feeding the generated frames back, shifted, through the uncached decoder reproduces
    every step's frames and stop logits (pre-net dropout off on both sides)."""
    module, variables, tokens, mask, speaker = _tts()
    a = module.args

    @jax.jit
    def run(variables):
        enc = module.apply(variables, tokens, mask, method=speecht5.SpeechT5.encode_text)
        step = st5_decoding.speech_step(
            module, variables, enc["hidden"], enc["valid"], speaker, prenet_dropout=False
        )
        out = speech.generate(
            step,
            speecht5.init_cache(a, 3, 5),
            batch=3,
            num_mel_bins=a.num_mel_bins,
            reduction_factor=a.reduction_factor,
            max_steps=5,
            rng=jax.random.key(0),
            threshold=a.reduction_factor + 1.0,  # never reached: every utterance runs 5 steps
        )
        full, _ = module.apply(
            variables,
            speecht5.shift_spectrograms_right(out["mel"], a.reduction_factor),
            speaker,
            enc["hidden"],
            enc["valid"],
            method=speecht5.SpeechT5.decode_speech,
        )
        return out, full

    out, full = run(variables)
    np.testing.assert_allclose(out["mel"], full["mel_before"], atol=1e-5)
    np.testing.assert_allclose(out["stop_probs"], jax.nn.sigmoid(full["stop_logits"]), atol=1e-6)


def test_synthesis_batched_equals_one_at_a_time_and_the_dropout_is_on():
    module, variables, tokens, mask, speaker = _tts()
    kw = dict(max_frames=11, threshold=0.74)  # stop sums here: ~0.73, ~0.68, ~0.84 per step
    key = jax.random.key(1)
    mel, lengths = _synthesize(module, variables, tokens, mask, speaker, key, **kw)
    assert mel.shape == (3, 12, module.args.num_mel_bins)
    lengths = np.asarray(lengths)
    np.testing.assert_array_equal(lengths, [4, 12, 2])
    for b in range(3):
        one = slice(b, b + 1)
        mel_b, len_b = _synthesize(
            module, variables, tokens[one], mask[one], speaker[one], key, **kw
        )
        assert int(len_b[0]) == lengths[b]
        np.testing.assert_allclose(mel_b[0], mel[b], atol=1e-5)
    assert np.all(np.asarray(mel)[np.arange(12)[None, :] >= lengths[:, None]] == 0)
    other, _ = _synthesize(module, variables, tokens, mask, speaker, jax.random.key(2), **kw)
    assert not np.allclose(other[:, :2], mel[:, :2])


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("max_frames", "threshold"))
def _convert(module, variables, audio, mask, speaker, rng, **kw):
    return st5_decoding.convert(module, variables, audio, mask, speaker, rng=rng, **kw)


def test_conversion_batched_equals_one_at_a_time():
    """`convert` (VC, SE) is the generation of the speech encoder's output, and a batch gives
    each utterance what it gives alone at the same padded width (the speech encoder pre-net's
    group norm, as HF's, reads the padding: widths are bucketed by the callers)."""
    module, variables = test_decoding_speecht5._model()
    audio, mask = test_decoding_speecht5._audio()
    speaker = np.random.default_rng(6).standard_normal((3, 6)).astype(np.float32)
    kw = dict(max_frames=9, threshold=0.7)
    key = jax.random.key(1)
    mel, lengths = _convert(module, variables, audio, mask, speaker, key, **kw)
    assert mel.shape == (3, 10, module.args.num_mel_bins)
    for b in range(3):
        one = slice(b, b + 1)
        mel_b, len_b = _convert(module, variables, audio[one], mask[one], speaker[one], key, **kw)
        assert int(len_b[0]) == int(lengths[b])
        np.testing.assert_allclose(mel_b[0], mel[b], atol=1e-5)
    enc = module.apply(variables, audio, mask, method=speecht5.SpeechT5.encode_speech)
    direct, _ = st5_decoding.generate_mel(
        module, variables, enc["hidden"], enc["valid"], speaker, rng=key, **kw
    )
    np.testing.assert_allclose(direct, mel, atol=1e-5)
