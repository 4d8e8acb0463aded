"""Noise and reverberation augmentation (data/augment.py, data/degrade.py): the SNR asked for is
the SNR made, rooms keep length, level and timing, draws repeat per (seed, epoch, utterance),
evaluation is untouched, and bad folders or ranges are one error naming the key."""

import pathlib

import broken_corpus as bc
import numpy as np
import pytest
import soundfile as sf
from test_augment import SMALL

from unispeech_jax.data import augment as A
from unispeech_jax.data import data_config, degrade
from unispeech_jax.data import pipeline as P
from unispeech_jax.data.decode import SpeechDecoder, with_babble
from unispeech_jax.data.manifest import load_split
from unispeech_jax.data.stats import DataError

SR = 16000
NOISY = dict(augment_reverb_prob=1.0, augment_noise_prob=1.0, augment_noise_snr=(5.0, 20.0))


def tone(n=SR, hz=440.0):
    return np.sin(2 * np.pi * hz * np.arange(n) / SR).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bc.write_corpus(tmp_path_factory.mktemp("corpus"), n_train=16, n_valid=5)


@pytest.mark.parametrize("seed", range(8))  # covers white, pink, brown and babble draws
def test_noise_is_added_at_the_snr_asked_for(seed):
    x = tone()
    talkers = (np.random.default_rng(9).standard_normal(3000),) * 3
    aug = A.Augment(noise_prob=1.0, noise_snr=(7.5, 7.5), babble=talkers)
    y = A.augment(x, aug, np.random.default_rng(seed), SR, 10**6)
    noise = y.astype(np.float64) - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert len(y) == len(x) and y.dtype == np.float32
    assert snr == pytest.approx(7.5, abs=0.05)


def test_rooms_keep_length_level_and_timing(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000)
    rir = degrade.synthetic_rir(np.random.default_rng(1))
    assert 0.2 * SR <= len(rir) <= 0.7 * SR and rir[0] == 1.0
    y = degrade.convolve_rir(x, rir)
    assert len(y) == len(x)
    assert np.std(y) == pytest.approx(np.std(x), rel=1e-6)
    assert not np.allclose(y, x)  # the room did something
    # A measured response with 100 samples of silence before its direct path (at 8 kHz):
    # read from the folder, it starts at that path, so an impulse stays where it was.
    measured = np.zeros(4000)
    measured[100], measured[150:] = 0.9, 0.05 * rng.standard_normal(3850)
    sf.write(tmp_path / "room.wav", measured, 8000)
    folder = degrade.AudioFolder(str(tmp_path), "data.augment_rir_dir")
    got = folder.impulse_response(np.random.default_rng(0))
    assert len(got) == pytest.approx(2 * 3900, abs=4)
    impulse = np.zeros(16000)
    impulse[5000] = 1.0
    assert int(np.argmax(np.abs(degrade.convolve_rir(impulse, got)))) == 5000


def test_noise_folder_windows_are_resampled_and_unit_level(tmp_path):
    (tmp_path / "noise" / "free-sound").mkdir(parents=True)  # MUSAN's nesting
    t = np.arange(8000 * 3) / 8000
    sf.write(tmp_path / "noise" / "free-sound" / "hum.wav", 0.1 * np.sin(2 * np.pi * 500 * t), 8000)
    (tmp_path / "noise" / "notes.txt").write_text("not audio")
    folder = degrade.AudioFolder(str(tmp_path / "noise"), "data.augment_noise_dir")
    for n in (5000, 100_000):  # shorter and longer than the 3 s file
        w = folder.window(n, np.random.default_rng(n))
        spectrum = np.abs(np.fft.rfft(w))
        assert len(w) == n and np.std(w) == pytest.approx(1.0)
        assert np.argmax(spectrum) * SR / n == pytest.approx(500, abs=5)


def test_draws_repeat_per_epoch_and_utterance_and_eval_is_untouched(corpus):
    cfg = data_config.resolve({**SMALL, **NOISY, "manifest_dir": str(corpus)})
    split = load_split(corpus, "train", cfg, vocabulary=None, with_labels=False, seed=0)
    aug = with_babble(data_config.augment_of(cfg), split.paths, split.lengths, cfg, seed=0)
    assert len(aug.babble) == len(split)  # 16 utterances: all of them are the reservoir
    decoder = SpeechDecoder(split, cfg, 0, True, aug)
    index, weight = np.arange(4), np.ones(4, np.float32)
    plain = SpeechDecoder(split, cfg, 0, True, None)(0, 8000, index, weight)[2]

    def audio(epoch, seed=0):
        d = SpeechDecoder(split, cfg, seed, True, aug) if seed else decoder
        return d(epoch, 8000, index, weight)[2]

    np.testing.assert_array_equal(audio(0), audio(0))
    for other in (audio(1), audio(0, seed=1)):
        for r in range(4):
            assert not np.array_equal(other[r], audio(0)[r])
    assert not np.array_equal(audio(0), plain)

    noisy_cfg = {**SMALL, **NOISY, "manifest_dir": str(corpus)}
    ev = next(P.make_eval_iter(noisy_cfg, "valid"))
    ev_plain = next(P.make_eval_iter({**SMALL, "manifest_dir": str(corpus)}, "valid"))
    np.testing.assert_array_equal(ev["audio"], ev_plain["audio"])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(augment_noise_prob=1.5), "data.augment_noise_prob=1.5: expected a probability"),
        (dict(augment_reverb_prob=-0.1), "data.augment_reverb_prob=-0.1: expected a prob"),
        (dict(augment_noise_snr=(20, 5)), r"data.augment_noise_snr=\(20, 5\): expected"),
        (dict(augment_noise_snr=10), r"data.augment_noise_snr=\(10,\): expected \(low, high\)"),
        (dict(augment_noise=0.5), "unknown data keys \\['augment_noise'\\]"),
    ],
)
def test_bad_ranges_and_keys_are_one_error(change, message):
    with pytest.raises(DataError, match=message):
        data_config.resolve({**SMALL, **change})


@pytest.mark.parametrize("key", ["augment_noise_dir", "augment_rir_dir"])
def test_bad_folders_stop_the_training_pipeline_naming_them(corpus, tmp_path, key):
    base = {**SMALL, **NOISY, "manifest_dir": str(corpus)}
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"^data.{key}={missing}: no such folder$"):
        P.make_train_iter({**base, key: str(missing)}, seed=0)
    empty = tmp_path / key
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DataError, match=f"^data.{key}={empty}: no readable .wav file"):
        P.make_train_iter({**base, key: str(empty)}, seed=0)
    data_config.resolve({**base, key: str(missing)})  # evaluation does not need the folder


def test_robust_config_is_tiny_plus_noise_and_rooms_for_the_budget():
    """tiny.py with noise and rooms, trained for the README job's budget (6000 steps) with
    tiny.py's schedule otherwise (warm-up, phases, peak lr)."""
    from unispeech_jax import config as config_lib

    configs = pathlib.Path(__file__).parents[1] / "configs"
    tiny = config_lib.load_file(configs / "tiny.py").to_dict()
    robust = config_lib.load_file(configs / "tiny_robust.py").to_dict()
    changed = {k for k in tiny["data"] if tiny["data"][k] != robust["data"][k]}
    assert changed == {"augment_reverb_prob", "augment_noise_prob"}
    assert robust["total_steps"] == 6000 and robust["optim"] == tiny["optim"]
    assert {**robust, "data": tiny["data"], "total_steps": tiny["total_steps"]} == tiny
    assert data_config.augment_of(data_config.resolve(robust["data"])).active
