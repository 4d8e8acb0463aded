"""Metrics on known cases: text error rates, BLEU, EER, accuracy, MCD and signal metrics."""

import math

import jiwer
import numpy as np
import pytest
from speech import add_noise, sentence

from unispeech_jax import metrics
from unispeech_jax.data.features import log_mel

# ============================================================================ text


def test_wer_and_cer_count_words_and_characters():
    assert metrics.wer(["the cat sat"], ["the bat sat down"]) == 2 / 3
    assert metrics.cer(["abc"], ["abd"]) == 1 / 3
    # A lost word boundary is one deletion among 3 characters 'a', ' ', 'b'.
    assert metrics.cer(["a b"], ["ab"]) == 1 / 3
    # Extra whitespace is not a character.
    assert metrics.cer(["  the  cat "], ["the cat"]) == 0.0


def test_cer_equals_jiwer_on_single_spaced_text():
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sat on a mat", "helo wordl"]
    assert metrics.cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps))


def test_bleu():
    corpus = ["the cat sat on the mat", "a quick brown fox jumps over the dog"]
    assert metrics.bleu(corpus, corpus) == pytest.approx(100.0)
    assert metrics.bleu(corpus, ["zz yy xx ww vv", "qq rr ss tt uu"]) == 0.0
    partial = metrics.bleu(corpus, ["the cat sat on a mat", corpus[1]])
    assert 0.0 < partial < 100.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        metrics.bleu(corpus, corpus[:1])


# ============================================================================ speakers


def test_accuracy():
    assert metrics.accuracy([0, 1, 2, 3], [0, 1, 0, 3]) == 0.75
    assert metrics.accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        metrics.accuracy([0, 1], [0])


def test_eer_separable_reversed_and_random():
    labels = np.array([1] * 50 + [0] * 50)
    scores = np.where(labels == 1, 1.0, 0.0) + np.linspace(0, 0.5, 100)
    assert metrics.equal_error_rate(scores, labels) == 0.0
    assert metrics.equal_error_rate(-scores, labels) == 1.0
    rng = np.random.default_rng(0)
    random_labels = rng.integers(0, 2, 4000)
    assert abs(metrics.equal_error_rate(rng.standard_normal(4000), random_labels) - 0.5) < 0.03


def test_eer_of_two_gaussians_matches_the_analytic_value():
    # Targets ~ N(d, 1), non-targets ~ N(0, 1): both rates are Phi(-d/2) at threshold d/2.
    d, n = 2.0, 20000
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    assert metrics.equal_error_rate(scores, labels) == pytest.approx(
        0.5 * math.erfc(d / 2 / math.sqrt(2)), abs=0.006
    )


def test_eer_needs_both_kinds_of_trial():
    with pytest.raises(ValueError, match="both target"):
        metrics.equal_error_rate([0.1, 0.2], [1, 1])


# ============================================================================ MCD


def test_mel_cepstra_follow_the_documented_definition():
    # ln mel_m = 1 + 2 * 0.3 cos(pi 3 (m + 1/2) / M): c_3 = 0.3, every other c_d = 0.
    m = np.arange(80)
    ln_mel = 1.0 + 2 * 0.3 * np.cos(np.pi * 3 * (m + 0.5) / 80)
    c = metrics.mel_cepstra((ln_mel / np.log(10))[None])
    expected = np.zeros((1, metrics.MCD_COEFFS))
    expected[0, 2] = 0.3
    np.testing.assert_allclose(c, expected, atol=1e-12)
    # One frame against a flat one: (10 / ln 10) sqrt(2 * 0.3^2) dB.
    flat = np.zeros((1, metrics.MCD_COEFFS))
    assert metrics.cepstral_distortion(c, flat) == pytest.approx(10 / np.log(10) * np.sqrt(0.18))


def test_mcd_is_zero_for_itself_gain_free_and_grows_with_noise():
    x = sentence()
    assert metrics.mel_cepstral_distortion(x, x) == 0.0
    assert metrics.mel_cepstral_distortion(x, 0.5 * x) < 0.05  # c_0 (the gain) is left out
    by_snr = [metrics.mel_cepstral_distortion(x, add_noise(x, snr)) for snr in (30, 20, 10)]
    assert 0.5 < by_snr[0] < by_snr[1] < by_snr[2]
    # The same on the log-mels themselves (a TTS output against its target).
    noisy = add_noise(x, 20)
    assert metrics.mel_cepstral_distortion(log_mel(x), log_mel(noisy)) == by_snr[1]


def test_mcd_aligns_a_delayed_copy():
    x = sentence()
    silence = np.zeros(8 * 256, np.float32)
    early, late = np.concatenate([x, silence]), np.concatenate([silence, x])
    assert metrics.mel_cepstral_distortion(early, late) < 0.5
    assert metrics.mel_cepstral_distortion(x, add_noise(x, 30)) > 0.5


# ============================================================================ signals


def test_si_sdr_of_scaled_and_noisy_copies():
    x = np.asarray(sentence(), np.float64)
    assert metrics.si_sdr(x, 0.3 * x) > 100.0
    # Noise orthogonal to the (zero-mean) reference: SI-SDR is exactly the SNR.
    centred = x - x.mean()
    noise = np.random.default_rng(0).standard_normal(len(x))
    noise -= noise.mean()
    noise -= centred * (noise @ centred) / (centred @ centred)
    noise *= np.sqrt(np.sum(centred**2) / np.sum(noise**2) / 10)  # 10 dB
    assert metrics.si_sdr(x, x + noise) == pytest.approx(10.0, abs=1e-9)
    # Plain white noise: the analytic SNR up to the chance correlation.
    assert metrics.si_sdr(x, add_noise(x, 5.0)) == pytest.approx(5.0, abs=0.1)
    batch = metrics.si_sdr(np.stack([x, x]), np.stack([x + noise, add_noise(x, 5.0)]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(10.0, abs=1e-9)


def test_pesq_and_stoi_fall_with_noise():
    x = sentence()
    clean_pesq = metrics.pesq_wb(x, x)
    assert clean_pesq > 4.5  # wide-band PESQ's ceiling is 4.64
    pesq_by_snr = [metrics.pesq_wb(x, add_noise(x, snr)) for snr in (20, 5)]
    assert clean_pesq > pesq_by_snr[0] > pesq_by_snr[1]
    assert metrics.stoi(x, x) == pytest.approx(1.0, abs=1e-6)
    stoi_by_snr = [metrics.stoi(x, add_noise(x, snr)) for snr in (20, -5)]
    assert 1.0 > stoi_by_snr[0] > stoi_by_snr[1]
    with pytest.raises(ValueError, match="16 kHz"):
        metrics.pesq_wb(x, x, sample_rate=8000)
