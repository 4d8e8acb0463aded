"""Log-mel -> waveform: the Griffin-Lim round trip, HiFi-GAN from a Hugging Face save, WAV files."""

import json

import hf_deps
import numpy as np
import pytest
import soundfile as sf
from speech import add_noise, sentence

from unispeech_jax import waveform
from unispeech_jax.data.features import log_mel
from unispeech_jax.metrics import mel_cepstral_distortion

# ============================================================================ Griffin-Lim


def _round_trip_errors(x, audio):
    """(spectral convergence on the linear mel, mean |log10-mel error|) of audio against x."""
    want = log_mel(x)
    got = log_mel(audio)[: len(want)]
    convergence = np.linalg.norm(10.0**want - 10.0**got) / np.linalg.norm(10.0**want)
    return convergence, np.mean(np.abs(want - got))


def test_griffin_lim_inverts_our_log_mel():
    x = sentence()
    mel = log_mel(x)
    audio = waveform.mel_to_audio(mel)
    assert audio.dtype == np.float32 and audio.shape == ((len(mel) - 1) * 256,)
    assert len(log_mel(audio)) == len(mel)
    convergence, mae = _round_trip_errors(x, audio)
    # Measured on this sentence (spectral convergence / mean |log10 error| / MCD dB): random
    # phases on the same magnitudes (no iteration) 0.58 / 0.31 / 1.83; 32 iterations 0.085 /
    # 0.066 / 0.71 (0.082 / 0.064 / 0.69 at 64: phase retrieval does not reach 0). Inverting
    # the wrong features lands far above: the log-mel read as a power mel 0.72 / 0.97 / 3.5, an
    # HTK filterbank 0.70 / 0.28 / 3.0. White noise at 30 dB SNR gives an MCD of 2.2.
    convergence0, mae0 = _round_trip_errors(x, waveform.griffin_lim(mel, n_iter=0))
    assert convergence0 > 0.4 and mae0 > 0.2
    assert convergence < 0.15 and mae < 0.12
    assert mel_cepstral_distortion(x, audio) < 1.2
    assert mel_cepstral_distortion(x, add_noise(x, 30)) > 1.5


def test_mel_shape_errors():
    with pytest.raises(ValueError, match=r"\[frames >= 2, 80\]"):
        waveform.mel_to_audio(np.zeros((10, 40)))
    with pytest.raises(ValueError, match=r"\[frames >= 2, 80\]"):
        waveform.mel_to_audio(np.zeros((1, 80)))
    assert waveform.mels_to_audio([]) == []


# ============================================================================ HiFi-GAN


def _tiny_hf_vocoder(torch, transformers):
    """A small SpeechT5HifiGan (hop 256) with weights large enough to give a real waveform
    (HF initialises with std 0.01: a near-zero output would compare equal to anything), and
    non-trivial input normalisation statistics."""
    config = transformers.SpeechT5HifiGanConfig(
        upsample_initial_channel=16,
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3], [1, 3]],
    )
    torch.manual_seed(0)
    model = transformers.SpeechT5HifiGan(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3 if p.ndim > 1 else 0.1)
        model.mean.normal_(-4.0, 1.0)
        model.scale.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("fmt", ["safetensors", "weight_norm", "pytorch_model.bin"])
def test_hifigan_from_a_hugging_face_save_matches_torch(tmp_path, fmt):
    torch = hf_deps.load("torch")
    transformers = hf_deps.load("transformers")
    model = _tiny_hf_vocoder(torch, transformers)
    rng = np.random.default_rng(0)
    mel = (rng.standard_normal((64, 80)) - 4.0).astype(np.float32)
    short = mel[:40]
    with torch.no_grad():
        want, want_short = (model(torch.from_numpy(m)).numpy() for m in (mel, short))
    assert want.std() > 0.1

    if fmt == "weight_norm":
        model.apply_weight_norm()  # saved as parametrizations.weight.original0/1
    if fmt == "pytorch_model.bin":
        model.config.to_json_file(tmp_path / "config.json")
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    else:
        model.save_pretrained(tmp_path)
    vocoder = waveform.load_hifigan(tmp_path)

    got = waveform.mel_to_audio(mel, vocoder)
    assert got.dtype == np.float32 and got.shape == (64 * 256,)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # A batch: padded to 64 frames, so only the short one's last frames (receptive field of
    # this tiny vocoder: 5 frames) see padding instead of the end of the signal.
    got_long, got_short = waveform.mels_to_audio([mel, short], vocoder)
    np.testing.assert_allclose(got_long, want, atol=1e-4)
    assert got_short.shape == want_short.shape
    np.testing.assert_allclose(got_short[: 35 * 256], want_short[: 35 * 256], atol=1e-4)


def test_load_hifigan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        waveform.load_hifigan(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"sampling_rate": 22050}))
    with pytest.raises(ValueError, match="22050 Hz"):
        waveform.load_hifigan(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"sampling_rate": 16000}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        waveform.load_hifigan(tmp_path)


# ============================================================================ files


def test_write_wav_round_trip(tmp_path):
    audio = np.array([0.0, 0.5, -0.25, 1.5, -2.0], np.float32)
    waveform.write_wav(tmp_path / "a.wav", audio)
    read, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(read, np.clip(audio, -1, 1), atol=1 / 32768)
