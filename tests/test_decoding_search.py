"""Greedy / beam search and CTC prefix scores against brute-force enumeration on toy models."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unispeech_jax.decoding import beam as beam_lib
from unispeech_jax.decoding import ctc, ctc_prefix

EOS, PAD, START = 0, 2, 1
VOCAB = 3  # eos, and the two labels 1 and 2 (2 doubles as pad in the outputs)


def _table(utterances, seed=0, vocab=VOCAB, histories=(VOCAB + 1) ** 5):
    """Random next-token log-probs per (utterance, history code)."""
    logits = np.random.default_rng(seed).normal(0.0, 2.0, (utterances, histories, vocab))
    return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)


def _toy(table):
    """A model whose next-token distribution depends on the whole history (coded base V+1):
    state {'utt', 'code'} [N] → step function and initial state for given rows."""
    vocab = table.shape[-1]

    def step(tokens, state):
        code = state["code"] * (vocab + 1) + tokens + 1
        return table[state["utt"], code], {"utt": state["utt"], "code": code}

    def state(utts, beam=1):
        utts = jnp.asarray(utts, jnp.int32)
        return beam_lib.tile_beams({"utt": utts, "code": jnp.zeros_like(utts)}, beam)

    return step, state


def _brute_force(table, utt, max_length, min_length=0, alpha=0.0):
    """Every hypothesis of the toy with its normalised score, best first."""
    table = np.asarray(table[utt])
    vocab = table.shape[-1]
    out = []
    for length in range(min_length, max_length + 1):
        for seq in itertools.product([t for t in range(vocab) if t != EOS], repeat=length):
            code, total = START + 1, 0.0
            for tok in seq:
                total += table[code, tok]
                code = code * (vocab + 1) + tok + 1
            if length < max_length:
                total += table[code, EOS]
                norm = (length + 1) ** alpha
            else:
                norm = max_length**alpha
            out.append((list(seq), total / norm))
    return sorted(out, key=lambda h: -h[1])


def _hyps(result, b):
    """Host list of (tokens, score) of utterance b's finite hypotheses."""
    toks, lens, scores = (np.asarray(result[k][b]) for k in ("tokens", "lengths", "scores"))
    return [(list(t[:n]), float(s)) for t, n, s in zip(toks, lens, scores) if np.isfinite(s)]


def _assert_same(got, want):
    assert [h[0] for h in got] == [h[0] for h in want]
    np.testing.assert_allclose([h[1] for h in got], [h[1] for h in want], rtol=1e-5)


def _beam(table, utts, beam, **kw):
    step, state = _toy(table)
    fn = jax.jit(
        lambda s, u: beam_lib.beam_search(
            step, s, jnp.full((len(utts),), START), beam=beam, eos_id=EOS, pad_id=PAD, **kw
        )
    )
    return fn(state(utts, beam), utts)


@pytest.mark.parametrize("alpha,min_length", [(0.0, 0), (1.0, 0), (0.6, 2)])
def test_exhaustive_beam_is_brute_force_n_best(alpha, min_length):
    """With K ≥ every step's candidates nothing is pruned: the n-best list is the exact top K."""
    table = _table(2)
    got = _beam(table, [0, 1], 12, max_length=3, min_length=min_length, length_alpha=alpha)
    for b in range(2):
        want = _brute_force(table, b, 3, min_length, alpha)[:12]
        _assert_same(_hyps(got, b), want)
    lengths, tokens = np.asarray(got["lengths"]), np.asarray(got["tokens"])
    assert np.all(tokens[np.arange(tokens.shape[-1]) >= lengths[..., None]] == PAD)


def test_small_beam_finds_the_best_sequence_of_a_peaked_model():
    """K = 2 over 4 steps: the best sequence is not greedy's, and beam search finds it."""
    table = _table(1, seed=8)
    want = _brute_force(table, 0, 4)[0]
    greedy = _hyps(_beam(table, [0], 1, max_length=4), 0)[0]
    got = _hyps(_beam(table, [0], 2, max_length=4), 0)[0]
    assert greedy[0] != want[0]
    assert got[0] == want[0] and np.isclose(got[1], want[1], rtol=1e-5)


def test_beam_one_is_greedy():
    table = _table(5, seed=1)
    step, state = _toy(table)
    utts = list(range(5))
    for max_length, min_length in [(5, 0), (4, 3)]:
        want = beam_lib.greedy_search(
            step,
            state(utts),
            jnp.full((5,), START),
            max_length=max_length,
            eos_id=EOS,
            pad_id=PAD,
            min_length=min_length,
        )
        got = _beam(table, utts, 1, max_length=max_length, min_length=min_length)
        np.testing.assert_array_equal(got["tokens"][:, 0], want["tokens"])
        np.testing.assert_array_equal(got["lengths"][:, 0], want["lengths"])
        np.testing.assert_allclose(got["scores"][:, 0], want["scores"], rtol=1e-6)
        assert np.all(np.asarray(want["lengths"]) >= min(min_length, max_length))
    assert len(set(np.asarray(want["lengths"]).tolist())) > 1  # utterances end at different steps


def test_batched_beam_equals_one_utterance_at_a_time():
    table = _table(4, seed=2)
    kw = dict(max_length=5, length_alpha=0.5)
    batched = _beam(table, [0, 1, 2, 3], 3, **kw)
    for b in range(4):
        alone = _beam(table, [b], 3, **kw)
        _assert_same(_hyps(alone, 0), _hyps(batched, b))


# -- CTC prefix scores ----------------------------------------------------------------------


def _ctc_posteriors(batch, frames, vocab, seed):
    logits = np.random.default_rng(seed).normal(0.0, 1.5, (batch, frames, vocab))
    return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)


def _collapse(path, blank):
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def _brute_prefix(log_probs, length, prefix, blank, full=False):
    """log Σ over alignments of the first `length` frames whose labels start with (or, if
    full, equal) `prefix`."""
    probs = np.exp(np.asarray(log_probs[:length], np.float64))
    total = 0.0
    for path in itertools.product(range(probs.shape[1]), repeat=length):
        labels = _collapse(path, blank)
        if labels == prefix if full else labels[: len(prefix)] == prefix:
            total += np.prod(probs[np.arange(length), path])
    with np.errstate(divide="ignore"):  # an impossible prefix: log 0 = −inf
        return np.log(total)


def test_prefix_scores_equal_sums_over_alignments():
    """ψ(h + c) for every candidate c along the path h = 1, 1, 3 (a repeat needs a blank) in
    two utterances of different lengths; ψ(h + eos) is the full likelihood of h."""
    blank, eos, vocab, frames = 0, 2, 4, 5
    log_probs = _ctc_posteriors(2, frames, vocab, seed=4)
    lengths = jnp.array([5, 4])
    ctc = ctc_prefix.init(log_probs, lengths, blank)
    state = ctc_prefix.initial_state(ctc, 1)
    cand = jnp.tile(jnp.arange(vocab), (2, 1))
    prefix = []
    for nxt in [1, 1, 3]:
        scored = ctc_prefix.score(ctc, state, cand, 1, eos)
        for b in range(2):
            for c in range(vocab):
                got = float(scored["psi"][b, c])
                if c == blank:
                    assert got == -np.inf
                    continue
                full = c == eos
                want = _brute_prefix(
                    log_probs[b], int(lengths[b]), prefix if full else prefix + [c], blank, full
                )
                np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{prefix}+{c}")
        state = ctc_prefix.select(scored, jnp.full((2, 1), nxt), jnp.full((2, 1), nxt), 2)
        prefix.append(nxt)


def test_full_hypothesis_score_is_the_ctc_likelihood():
    """On a longer case, ψ(h + eos) = −(optax CTC loss of h)."""
    blank, eos, vocab, frames = 0, 5, 6, 14
    log_probs = _ctc_posteriors(2, frames, vocab, seed=5)
    lengths = jnp.array([14, 11])
    labels = [[1, 2, 2, 3, 4], [3, 3, 1]]
    ctc = ctc_prefix.init(log_probs, lengths, blank)
    state = ctc_prefix.initial_state(ctc, 1)
    for step in range(5):
        nxt = jnp.array([[labels[0][step]], [labels[1][min(step, 2)]]])
        scored = ctc_prefix.score(
            ctc, state, jnp.concatenate([nxt, jnp.full((2, 1), eos)], 1), 1, eos
        )
        if step == 3:  # utterance 1's hypothesis is complete: 3 3 1
            got_1 = float(scored["psi"][1, 1])
        state = ctc_prefix.select(scored, jnp.zeros((2, 1), jnp.int32), nxt, 2)
    got_0 = float(ctc_prefix.score(ctc, state, jnp.full((2, 1), eos), 1, eos)["psi"][0, 0])
    padded = np.zeros((2, 5), np.int32)
    padded[0], padded[1, :3] = labels[0], labels[1]
    loss = optax.ctc_loss(
        log_probs,
        (jnp.arange(frames)[None] >= lengths[:, None]).astype(jnp.float32),
        jnp.asarray(padded),
        jnp.asarray([[0] * 5, [0, 0, 0, 1, 1]], jnp.float32),
        blank_id=blank,
    )
    np.testing.assert_allclose([got_0, got_1], -np.asarray(loss), rtol=1e-5)


def test_ctc_weight_zero_is_attention_only():
    table = _table(3, seed=6)
    ctc = ctc_prefix.init(_ctc_posteriors(3, 6, VOCAB, seed=7), jnp.array([6, 5, 4]), 2)
    kw = dict(max_length=4, length_alpha=0.3)
    attention = _beam(table, [0, 1, 2], 3, **kw)
    zero = _beam(table, [0, 1, 2], 3, ctc=ctc, ctc_weight=0.0, pre_beam=3, **kw)
    for b in range(3):
        _assert_same(_hyps(zero, b), _hyps(attention, b))


def test_exhaustive_joint_beam_is_brute_force_joint_n_best():
    """(1−λ)·attention + λ·CTC over every hypothesis: prefix score for those cut at
    max_length, full likelihood for ended ones; hypotheses with the blank are impossible."""
    blank, weight, frames = 3, 0.4, 5
    table = _table(2, seed=8, vocab=4)
    log_probs = _ctc_posteriors(2, frames, 4, seed=9)
    lengths = [5, 4]
    ctc = ctc_prefix.init(log_probs, jnp.array(lengths), blank)
    got = _beam(table, [0, 1], 12, max_length=3, ctc=ctc, ctc_weight=weight, pre_beam=4)
    for b in range(2):
        want = []
        for seq, att in _brute_force(table, b, 3):
            if blank in seq:
                continue
            full = len(seq) < 3
            score = _brute_prefix(log_probs[b], lengths[b], seq, blank, full)
            want.append((seq, (1 - weight) * att + weight * score))
        want = sorted(want, key=lambda h: -h[1])[:12]
        _assert_same(_hyps(got, b), want)


def test_ctc_prefix_beam_search_is_brute_force_n_best():
    """With K above every step's candidates, the n-best are the label sequences of highest
    P(y | x) (sums over their alignments), for utterances of different lengths."""
    blank, classes, frames = 0, 3, 4
    log_probs = _ctc_posteriors(2, frames, classes, seed=10)
    lengths = [4, 3]
    got = jax.jit(lambda lp, n: ctc.prefix_beam_search(lp, n, beam=16, blank_id=blank))(
        log_probs, jnp.array(lengths)
    )
    for b in range(2):
        want = []
        for n in range(frames + 1):
            for seq in itertools.product(range(1, classes), repeat=n):
                score = _brute_prefix(log_probs[b], lengths[b], list(seq), blank, full=True)
                if np.isfinite(score):
                    want.append((list(seq), score))
        want = sorted(want, key=lambda h: -h[1])[:16]
        _assert_same(_hyps(got, b), want)


def test_ctc_prefix_beam_search_of_a_peaked_posterior_is_the_best_path():
    paths = np.array([[1, 1, 0, 2, 2, 0, 2, 1], [0, 3, 3, 3, 0, 0, 1, 1]])
    log_probs = jax.nn.log_softmax(5.0 * jnp.eye(4)[paths], axis=-1)
    lengths = jnp.array([8, 6])
    got = jax.jit(lambda lp, n: ctc.prefix_beam_search(lp, n, beam=3))(log_probs, lengths)
    want = ctc.ctc_greedy(log_probs, np.arange(8)[None] < np.asarray(lengths)[:, None])
    assert [_hyps(got, b)[0][0] for b in range(2)] == want == [[1, 2, 2, 1], [3]]
