"""SpeechT5 ASR decoding on a tiny random model: cached beam search against recomputing every
step without the cache, batched against one utterance at a time, joint CTC/attention."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unispeech_jax.decoding import beam as beam_lib
from unispeech_jax.decoding import speecht5 as st5_decoding
from unispeech_jax.models import speecht5

VOCAB = 13
SAMPLES = (3200, 2300, 2800)
TINY = dict(
    conv_dim=(16, 16),
    conv_kernel=(10, 3),
    conv_stride=(5, 2),
    hidden_size=16,
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=24,
    decoder_layers=2,
    decoder_attention_heads=2,
    decoder_ffn_dim=24,
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
    num_mel_bins=4,
    speech_decoder_prenet_units=8,
    speaker_embedding_dim=6,
    speech_decoder_postnet_units=8,
    speech_decoder_postnet_layers=2,
    num_codevectors_per_group=5,
    num_clusters=7,
    final_dim=8,
    # The jitter seed below was picked on the per-layer layout (leaf order decides the draws).
    scan_layers=False,
)


@functools.cache
def _model(with_ctc=False):
    args = speecht5.ModelArgs.from_config({**TINY, "ctc_loss_weight": 0.5 if with_ctc else 0.0})
    module = speecht5.SpeechT5(args, VOCAB)
    variables = speecht5.init_variables(module, jax.random.key(0), unbox=True)
    # Jittered coders and a fresh small text embedding (seed picked so that the greedy outputs
    # are not one repeated token and the utterances end at different steps).
    rng = np.random.default_rng(3)
    variables = jax.tree_util.tree_map_with_path(
        lambda p, x: (
            x + 0.5 * rng.standard_normal(x.shape).astype(np.float32)
            if "coder" in jax.tree_util.keystr(p)
            else x
        ),
        variables,
    )
    embedding = 0.2 * rng.standard_normal((VOCAB, TINY["hidden_size"])).astype(np.float32)
    variables["params"]["embed_tokens"]["embedding"] = embedding
    return module, variables


def _audio(rows=(0, 1, 2)):
    rng = np.random.default_rng(0)
    audio = np.zeros((len(SAMPLES), max(SAMPLES)), np.float32)
    mask = np.zeros(audio.shape, bool)
    for i, n in enumerate(SAMPLES):
        audio[i, :n] = rng.standard_normal(n)
        mask[i, :n] = True
    rows = list(rows)
    return audio[rows], mask[rows]


@functools.partial(
    jax.jit,
    static_argnums=(0,),
    static_argnames=("max_length", "beam", "length_alpha", "ctc_weight"),
)
def _search(module, variables, audio, mask, **kw):
    return st5_decoding.search(module, variables, audio, mask, **kw)


def _uncached_search(module, variables, audio, mask, beam, max_length, length_alpha):
    """Beam search whose step re-runs the whole teacher-forced decoder on the history."""
    a = module.args
    enc = module.apply(variables, audio, mask, method=speecht5.SpeechT5.encode_speech)
    enc = beam_lib.tile_beams({k: enc[k] for k in ("hidden", "valid")}, beam)
    n = enc["hidden"].shape[0]

    def step(tokens, state):
        t = state["t"]
        history = state["history"].at[:, t].set(tokens)
        logits, _ = module.apply(
            variables,
            history,
            enc["hidden"],
            enc["valid"],
            jnp.broadcast_to(jnp.arange(max_length) <= t, history.shape),
            method=speecht5.SpeechT5.decode_text,
        )
        log_probs = jax.nn.log_softmax(logits[:, t], axis=-1)
        return log_probs, {"history": history, "t": t + 1}

    state = {"history": jnp.zeros((n, max_length), jnp.int32), "t": jnp.zeros((), jnp.int32)}
    return beam_lib.beam_search(
        step,
        state,
        jnp.full((audio.shape[0],), a.decoder_start_token_id),
        beam=beam,
        max_length=max_length,
        eos_id=a.decoder_start_token_id,
        pad_id=a.pad_token_id,
        length_alpha=length_alpha,
    )


def _assert_same_nbest(got, want):
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_array_equal(got["lengths"], want["lengths"])
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-4)


def test_cached_beam_equals_recomputing_without_the_cache():
    module, variables = _model()
    audio, mask = _audio()
    kw = dict(beam=3, max_length=8, length_alpha=0.5)
    got = _search(module, variables, audio, mask, **kw)
    want = jax.jit(functools.partial(_uncached_search, module, **kw))(variables, audio, mask)
    _assert_same_nbest(got, want)
    assert len(set(np.asarray(got["lengths"]).ravel().tolist())) > 2  # hypotheses end apart


def test_batched_search_equals_one_utterance_at_a_time():
    module, variables = _model(with_ctc=True)
    for kw in (dict(beam=1), dict(beam=3, length_alpha=1.0), dict(beam=3, ctc_weight=0.3)):
        batched = _search(module, variables, *_audio(), max_length=8, **kw)
        for b in range(len(SAMPLES)):
            alone = _search(module, variables, *_audio([b]), max_length=8, **kw)
            _assert_same_nbest(alone, {k: v[b : b + 1] for k, v in batched.items()})


def test_recognize_returns_the_best_hypothesis_and_joint_decoding_changes_it():
    module, variables = _model(with_ctc=True)
    audio, mask = _audio()
    nbest = _search(module, variables, audio, mask, beam=3, max_length=8)
    got = st5_decoding.recognize(module, variables, audio, mask, beam=3, max_length=8)
    for b, hyp in enumerate(got):
        assert hyp == np.asarray(nbest["tokens"][b, 0, : nbest["lengths"][b, 0]]).tolist()
    joint = st5_decoding.recognize(
        module, variables, audio, mask, beam=3, max_length=8, ctc_weight=0.5
    )
    assert joint != got
    blank = module.args.ctc_blank_id
    assert all(blank not in hyp for hyp in joint), joint  # the CTC blank is never emitted


def test_joint_decoding_needs_a_ctc_head():
    module, variables = _model()
    with pytest.raises(ValueError, match="CTC head"):
        st5_decoding.recognize(module, variables, *_audio(), beam=2, max_length=4, ctc_weight=0.3)
