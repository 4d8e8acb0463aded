"""Log-mel -> waveform: Griffin-Lim by default, HiFi-GAN when a user supplies its weights.

    audio = mel_to_audio(log_mel)                          # Griffin-Lim, float32 [(F-1)*256]
    vocoder = load_hifigan("path/to/speecht5_hifigan")     # a Hugging Face save, see below
    audio = mel_to_audio(log_mel, vocoder)                 # HiFi-GAN, float32 [F*256]
    audios = mels_to_audio([mel_a, mel_b], vocoder)        # one jitted batch
    write_wav("out.wav", audio)

Log-mels are the SpeechT5 target of `data.features.log_mel`: float [F, 80], log10 of the
magnitude (power 1) mel spectrogram, Slaney mel scale and area-normalised filters over
80-7600 Hz, n_fft 1024, hop 256, periodic Hann, centred with reflect padding, 16 kHz.

Griffin-Lim inverts exactly that: the linear magnitude is the non-negative least-squares
solution of `filterbank @ |STFT| = 10**log_mel` (the same filterbank array as the features),
then librosa's fast Griffin-Lim (momentum 0.99) with the same STFT. It returns the (F-1)*256
samples whose centred STFT has the F frames given.

HiFi-GAN weights: a directory holding a Hugging Face `SpeechT5HifiGan` save, i.e. what
`SpeechT5HifiGan.from_pretrained(...).save_pretrained(DIR)` writes (`config.json` and
`model.safetensors`, or `pytorch_model.bin`, which needs torch to read), e.g. a local copy of
microsoft/speecht5_hifigan. It is converted on load (`convert.hf_speecht5.vocoder_from_hf`);
safetensors files are read with numpy, so torch is not needed. Weight-normalised saves
(`weight_g`/`weight_v` or `parametrizations.weight.original0/1`) are folded on load. The mel
normalisation HF applies when `normalize_before` (`(mel - mean) / scale`, the `mean` and `scale`
buffers of the save) is part of the converted params.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import types
from typing import Any

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import soundfile as sf
from safetensors.numpy import load_file

from unispeech_jax.convert.hf_speecht5 import vocoder_from_hf
from unispeech_jax.data import features
from unispeech_jax.models import vocoder as vocoder_model

GRIFFIN_LIM_ITERS = 32
# HiFi-GAN batches of several are padded to a multiple of this many frames: fewer shapes to jit.
FRAME_BUCKET = 64


@dataclasses.dataclass(frozen=True)
class Vocoder:
    """A HiFi-GAN generator and its float32 params."""

    module: vocoder_model.HifiGan
    params: Any


# ============================================================================ Griffin-Lim


def _check_mel(mel, dim: int, min_frames: int) -> np.ndarray:
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2 or mel.shape[1] != dim or len(mel) < min_frames:
        raise ValueError(f"a log-mel must be [frames >= {min_frames}, {dim}], got {mel.shape}")
    return mel


def griffin_lim(log_mel, n_iter: int = GRIFFIN_LIM_ITERS, seed: int = 0) -> np.ndarray:
    """Log-mel float [F, 80] (see module docstring) -> float32 [(F-1)*256] waveform."""
    # (F-1)*256 samples: one frame would leave nothing for the STFT to pad.
    log_mel = _check_mel(log_mel, features.MEL_BINS, 2).astype(np.float64)
    bank = features.mel_filterbank(
        features.SAMPLE_RATE,
        features.MEL_N_FFT,
        features.MEL_BINS,
        features.MEL_FMIN,
        features.MEL_FMAX,
    )
    magnitude = librosa.util.nnls(bank, 10.0**log_mel.T)  # [n_fft//2 + 1, F]
    audio = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        hop_length=features.MEL_HOP,
        n_fft=features.MEL_N_FFT,
        window="hann",
        center=True,
        pad_mode="reflect",
        length=(len(log_mel) - 1) * features.MEL_HOP,
        random_state=seed,
    )
    return audio.astype(np.float32)


# ============================================================================ HiFi-GAN


def _fold_weight_norm(state: dict) -> dict:
    """Replaces torch weight-norm pairs (g [out,1,1], v [out,in,K]; the norm over all but dim
    0) by the plain `weight` they stand for; other entries pass through."""
    pairs = {
        ".weight_g": ".weight_v",
        ".parametrizations.weight.original0": ".parametrizations.weight.original1",
    }
    out = {}
    for key, value in state.items():
        g_suffix = next((g for g in pairs if key.endswith(g)), None)
        v_suffix = next((v for v in pairs.values() if key.endswith(v)), None)
        if g_suffix is not None:
            stem = key[: -len(g_suffix)]
            v = np.asarray(state[stem + pairs[g_suffix]], np.float32)
            norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
            out[stem + ".weight"] = np.asarray(value, np.float32).reshape(norm.shape) * v / norm
        elif v_suffix is None:
            out[key] = value
    return out


def _read_state_dict(directory: pathlib.Path) -> dict:
    safetensors_path = directory / "model.safetensors"
    if safetensors_path.exists():
        return load_file(str(safetensors_path))
    bin_path = directory / "pytorch_model.bin"
    if not bin_path.exists():
        raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")
    try:
        import torch  # optional: only this legacy format needs it
    except ImportError:
        raise ImportError(
            f"{bin_path}: reading pytorch_model.bin needs torch; install it or re-save the "
            "vocoder with safetensors (save_pretrained does by default)"
        ) from None
    state = torch.load(bin_path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}


def load_hifigan(directory) -> Vocoder:
    """A Hugging Face `SpeechT5HifiGan` save (see module docstring) -> Vocoder."""
    directory = pathlib.Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path}: missing (expected a SpeechT5HifiGan save)")
    config = json.loads(config_path.read_text())
    rate = config.get("sampling_rate", features.SAMPLE_RATE)
    hop = math.prod(config.get("upsample_rates", vocoder_model.VocoderArgs.upsample_rates))
    if (rate, hop) != (features.SAMPLE_RATE, features.MEL_HOP):
        raise ValueError(
            f"{config_path}: a vocoder for {rate} Hz with hop {hop}; our mels are "
            f"{features.SAMPLE_RATE} Hz with hop {features.MEL_HOP}"
        )
    defaults = dataclasses.asdict(vocoder_model.VocoderArgs())
    hf_config = types.SimpleNamespace(**{k: config.get(k, v) for k, v in defaults.items()})
    try:
        cfg, params = vocoder_from_hf(_fold_weight_norm(_read_state_dict(directory)), hf_config)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{directory}: not a SpeechT5HifiGan state dict ({e})") from None
    return Vocoder(vocoder_model.build(cfg), jax.device_put(params))


@functools.partial(jax.jit, static_argnums=0)
def _hifigan(module: vocoder_model.HifiGan, params, mel):
    return module.apply({"params": params}, mel)


def hifigan(vocoder: Vocoder, mels: list) -> list[np.ndarray]:
    """Log-mels float [F_i, 80] -> float32 [F_i*256] waveforms, as one jitted batch.

    A batch of one is the Hugging Face model's output. A larger batch is padded to a multiple
    of FRAME_BUCKET frames (one compilation per bucket) with the vocoder's mel mean (zero after
    its normalisation); an utterance's last frames within the receptive field (15 frames for
    the SpeechT5 vocoder) then see that padding where a batch of one sees the end of the
    signal, and differ from it.
    """
    dim = vocoder.module.args.model_in_dim
    mels = [_check_mel(m, dim, 1) for m in mels]
    lengths = [len(m) for m in mels]
    frames = max(lengths)
    if len(mels) > 1:
        frames = -(-frames // FRAME_BUCKET) * FRAME_BUCKET
    pad = np.asarray(vocoder.params.get("mean", np.zeros(dim)), np.float32)
    batch = np.tile(pad, (len(mels), frames, 1))
    for i, mel in enumerate(mels):
        batch[i, : len(mel)] = mel
    audio = np.asarray(_hifigan(vocoder.module, vocoder.params, jnp.asarray(batch)))
    hop = math.prod(vocoder.module.args.upsample_rates)
    return [audio[i, : n * hop] for i, n in enumerate(lengths)]


# ============================================================================ entry points


def mels_to_audio(mels: list, vocoder: Vocoder | None = None) -> list[np.ndarray]:
    """Log-mels float [F_i, 80] -> float32 waveforms at 16 kHz: HiFi-GAN in one batch
    ([F_i*256] each) if a vocoder is given, else Griffin-Lim one at a time ([(F_i-1)*256])."""
    if not mels:
        return []
    if vocoder is None:
        return [griffin_lim(m) for m in mels]
    return hifigan(vocoder, mels)


def mel_to_audio(mel, vocoder: Vocoder | None = None) -> np.ndarray:
    """One log-mel float [F, 80] -> float32 waveform at 16 kHz (see `mels_to_audio`)."""
    return mels_to_audio([mel], vocoder)[0]


def write_wav(path, audio, sample_rate: int = features.SAMPLE_RATE) -> None:
    """float [S] in [-1, 1] (clipped) -> 16-bit PCM WAV file."""
    audio = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")
