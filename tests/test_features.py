"""Log-mel and MFCC features against librosa, frame counts against the conv encoder."""

import librosa
import numpy as np
import pytest
import soundfile as sf

from unispeech_jax.data import features as F


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    """Three eSpeak utterances (float32 [S] each) and a click-and-silence edge case."""
    rows = (tiny_corpus / "train.tsv").read_text().split("\n")
    root = rows[0]
    out = [sf.read(f"{root}/{r.split(chr(9))[0]}", dtype="float32")[0] for r in rows[1:4]]
    edge = np.zeros(5000, np.float32)
    edge[2500] = 1.0
    return out + [edge]


def librosa_log_mel(x):
    mel = librosa.feature.melspectrogram(
        y=x,
        sr=16000,
        n_fft=1024,
        hop_length=256,
        pad_mode="reflect",
        power=1.0,
        n_mels=80,
        fmin=80,
        fmax=7600,
    )
    return np.log10(np.maximum(1e-10, mel)).T


def test_log_mel_matches_librosa(speech):
    for x in speech:
        ours, ref = F.log_mel(x), librosa_log_mel(x)
        assert ours.shape == ref.shape == (F.mel_frames(len(x)), 80)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_filterbank_matches_librosa():
    for args in ((16000, 1024, 80, 80.0, 7600.0), (16000, 400, 40, 0.0, 8000.0)):
        ref = librosa.filters.mel(
            sr=args[0],
            n_fft=args[1],
            n_mels=args[2],
            fmin=args[3],
            fmax=args[4],
            dtype=np.float64,
        )
        np.testing.assert_allclose(F.mel_filterbank(*args), ref, rtol=1e-10, atol=1e-12)
    # The sparse product equals the dense one, also with empty filters (64-point FFT, 40 mels).
    spec = np.random.default_rng(0).random((7, 33))
    dense = F.mel_filterbank(16000, 64, 40, 0.0, 8000.0)
    assert (dense.sum(1) == 0).any()
    np.testing.assert_allclose(
        F.apply_filterbank(spec, 16000, 64, 40, 0.0, 8000.0), spec @ dense.T, atol=1e-12
    )


def test_log_mel_tf_matches_numpy(speech):
    import tensorflow as tf

    fn = tf.function(F.log_mel_tf, input_signature=[tf.TensorSpec([None], tf.float32)])
    for x in speech:
        ours = fn(tf.constant(x)).numpy()
        assert ours.shape == (len(x) // 256 + 1, 80)
        np.testing.assert_allclose(ours, F.log_mel(x), atol=1e-3, rtol=0)


def test_mfcc_and_deltas_match_librosa(speech):
    for x in speech:
        ref = librosa.feature.mfcc(
            y=x, sr=16000, n_mfcc=13, n_fft=400, hop_length=320, center=False, n_mels=40
        ).T
        ours = F.mfcc(x)
        assert ours.shape == ref.shape == (F.conv_frames(len(x)), 13)
        np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
        d = librosa.feature.delta(ref, width=5, mode="nearest", axis=0)
        np.testing.assert_allclose(F.deltas(ref), d, atol=1e-4, rtol=0)
        full = F.mfcc_deltas(x)
        assert full.shape == (len(ref), 39)
        np.testing.assert_allclose(full[:, 13:26], F.deltas(ours), atol=1e-6)


def test_frame_counts_match_the_conv_encoder():
    from unispeech_jax.models.layers import conv_output_lengths

    n = np.arange(400, 40000, 7)
    expected = conv_output_lengths(n, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    np.testing.assert_array_equal(F.conv_frames(n), expected)
    assert F.conv_frames(399) == 0 and F.conv_frames(720) == 2 and F.conv_frames(719) == 1
    assert F.mfcc(np.zeros(399, np.float32)).shape == (0, 13)
    assert F.mel_frames(16000) == 63 and isinstance(F.mel_frames(16000), int)
