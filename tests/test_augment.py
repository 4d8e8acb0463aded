"""Waveform augmentation: the resampling and the equaliser do what they claim, and the
pipeline applies them to training batches only, reproducibly, within the batch rows."""

import json

import broken_corpus as bc
import numpy as np
import pytest

from unispeech_jax.data import augment as A
from unispeech_jax.data import data_config
from unispeech_jax.data import pipeline as P

SR = 16000


def peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * SR / len(x)


class FixedRng:
    """Stands in for a generator: every uniform draw returns its upper bound times `at`."""

    def __init__(self, at):
        self.at = at

    def uniform(self, low, high, size=None):
        v = low + (high - low) * (self.at + 1) / 2
        return v if size is None else np.full(size, v)


@pytest.mark.parametrize("at", [-1.0, 1.0])
def test_speed_moves_frequency_and_duration(at):
    t = np.arange(16000) / SR
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = A.augment(x, A.Augment(speed=0.1), FixedRng(at), SR, max_len=10**6)
    factor = 1 + 0.1 * at
    assert len(y) == round(16000 / factor)
    assert abs(peak_hz(y) - 440 * factor) < 2.0
    assert y.dtype == np.float32


def test_slow_down_is_capped_at_the_row():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    y = A.augment(x, A.Augment(speed=0.2), FixedRng(-1.0), SR, max_len=8500)
    assert len(y) == 8500


def test_speed_up_does_not_alias():
    # 7.5 kHz sped up by 1.2 would land at 9 kHz, above Nyquist: it must vanish, not fold.
    t = np.arange(16000) / SR
    x = np.sin(2 * np.pi * 7500 * t) + np.sin(2 * np.pi * 1000 * t)
    y = A.augment(x.astype(np.float32), A.Augment(speed=0.2), FixedRng(1.0), SR, 10**6)
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    assert spectrum[np.abs(freqs - 1200) < 20].max() > 100 * spectrum[freqs > 2000].max()


def test_equaliser_gain_matches_its_curve():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(64000).astype(np.float32)
    draws = np.random.default_rng(5)
    aug = A.Augment(tilt_db=3.0, bumps_db=6.0)
    y = A.augment(x, aug, draws, SR, 10**6)
    assert len(y) == len(x)
    again = np.random.default_rng(5)
    tilt = again.uniform(-3, 3)
    bumps = again.uniform(-6, 6, len(A.EQ_CENTRES_HZ))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    measured = 20 * np.log10(np.abs(np.fft.rfft(y)) / np.abs(np.fft.rfft(x)))
    expected = A.eq_gain_db(freqs, tilt, bumps)
    np.testing.assert_allclose(measured[1:-1], expected[1:-1], atol=1e-3)
    assert np.ptp(expected) > 3.0  # the draw changed something audible
    # The curve itself: 0 dB tilt contribution at 1 kHz, `tilt` dB one octave up.
    assert A.eq_gain_db(np.array([2000.0]), 2.0, np.zeros(6))[0] == pytest.approx(2.0)
    assert A.eq_gain_db(np.array([1000.0]), 2.0, np.zeros(6))[0] == pytest.approx(0.0)


def test_config_checks():
    with pytest.raises(ValueError, match="augment_speed"):
        A.Augment(speed=0.6)
    with pytest.raises(ValueError, match="augment_tilt_db"):
        A.Augment(tilt_db=-1)
    with pytest.raises(ValueError, match="line up"):
        data_config.resolve({**SMALL, "augment_speed": 0.1, "km_labels": "km"})


SMALL = dict(
    source="manifest",
    min_sample_len=1000,
    max_sample_len=8000,
    bucket_boundaries=(2000, 4000, 8000),
    max_samples_per_batch=16000,
    batch_multiple=2,
    max_label_len=32,
    prefetch=2,
    num_parallel_calls=2,
)
AUG = dict(augment_speed=0.15, augment_tilt_db=2.0, augment_bumps_db=4.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bc.write_corpus(tmp_path_factory.mktemp("corpus"), n_train=24, n_valid=7)


def test_pipeline_augments_training_only_and_reproducibly(corpus):
    plain_cfg = {**SMALL, "manifest_dir": str(corpus)}
    cfg = {**plain_cfg, **AUG}
    plain = [next(P.make_train_iter(plain_cfg, seed=0)) for _ in range(1)][0]
    it = P.make_train_iter(cfg, seed=0)
    first = [next(it) for _ in range(3)]
    saved = json.loads(json.dumps(it.position))
    then = [next(it) for _ in range(2)]
    again = P.make_train_iter(cfg, seed=0)
    for a, b in zip(first + then, [next(again) for _ in range(5)]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    resumed = P.make_train_iter(cfg, seed=0, start_position=saved)
    for a, b in zip(then, [next(resumed) for _ in range(2)]):
        np.testing.assert_array_equal(a["audio"], b["audio"])

    # Same rows and labels as without augmentation; audio changed, lengths moved, rows fit.
    b = first[0]
    np.testing.assert_array_equal(b["phones"], plain["phones"])
    assert b["audio"].shape == plain["audio"].shape
    lengths, plain_lengths = b["audio_mask"].sum(1), plain["audio_mask"].sum(1)
    assert (lengths != plain_lengths).any()
    assert (np.abs(lengths / plain_lengths - 1) <= 0.15 / 0.85 + 1e-3).all()
    for row, mask in zip(b["audio"], b["audio_mask"]):
        assert (row[~mask] == 0).all() and np.abs(row[mask]).max() > 0

    # Evaluation reads the files as they are.
    ev = next(P.make_eval_iter(cfg, "valid"))
    ev_plain = next(P.make_eval_iter(plain_cfg, "valid"))
    np.testing.assert_array_equal(ev["audio"], ev_plain["audio"])
