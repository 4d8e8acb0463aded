"""One shard of the eSpeak NG corpus: `SHARD_SIZE` utterances spoken, degraded if asked, and
written as FLAC, in a fresh worker process.

A shard's content depends only on (seed, split, shard index), never on the worker count or on
which process ran it: libespeak-ng keeps global state that leaks from one utterance into the
next (filters, echo buffers), so every shard runs in a fresh process and the library's random
generator is reseeded before every utterance. Noise and reverberation (data/degrade.py) are
synthetic and seeded: nothing to download.
"""

from __future__ import annotations

import itertools
import pathlib
import time
from collections import Counter

import numpy as np
import soundfile as sf
import soxr

from unispeech_jax.data.audio import SAMPLE_RATE
from unispeech_jax.data.degrade import make_noise, noise_at_snr, reverberate
from unispeech_jax.data.espeak import ESpeak, sentence_phones
from unispeech_jax.data.sentences import faker_sentences
from unispeech_jax.data.voices import JITTER, SPLITS

SHARD_SIZE = 32


def texts_for_shard(by_split: dict, split: str, index: int, seed: int) -> list:
    """The (lang, text[, translation]) list of one shard in --text-file / --translations mode
    (cycles if the file is short)."""
    pool = by_split[split]
    order = np.random.default_rng([seed, 11, SPLITS.index(split)]).permutation(len(pool))
    start = index * SHARD_SIZE
    return [pool[order[(start + k) % len(pool)]] for k in range(SHARD_SIZE)]


def _shard_seed(seed: int, split: str, index: int) -> list[int]:
    return [seed, SPLITS.index(split), index]


def _write_flac(path: pathlib.Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def _renderings(texts, speakers: list[dict], parallel: int, rng: np.random.Generator):
    """(lang, text, translation or None, speaker) of successive utterances: every sentence
    of `texts` spoken by `parallel` different speakers (one draw of one speaker when 1, so a
    corpus without --parallel keeps its random sequence)."""
    for lang, text, *translation in texts:
        if parallel == 1:
            chosen = [int(rng.integers(len(speakers)))]
        else:
            chosen = rng.choice(len(speakers), parallel, replace=False).tolist()
        for k in chosen:
            yield lang, text, (translation or [None])[0], speakers[k]


def _snr_of(noise_snr, rng: np.random.Generator) -> float:
    """The SNR of one noisy copy: the one given, or a draw from a list of them."""
    if isinstance(noise_snr, (int, float)):
        return float(noise_snr)
    return float(noise_snr[int(rng.integers(len(noise_snr)))])


def run_shard(spec: dict) -> dict:
    """Synthesises one shard, writes its FLAC files, returns its utterance records."""
    start_cpu = time.process_time()
    split, index = spec["split"], spec["index"]
    rng = np.random.default_rng(_shard_seed(spec["seed"], split, index))
    engine = ESpeak()
    out = pathlib.Path(spec["out"])
    languages = spec["languages"]
    if spec["texts"] is not None:
        texts = iter(spec["texts"])
    else:
        streams = {lang: faker_sentences(lang, split, rng) for lang in languages}
        texts = (
            (lang, next(streams[lang]))
            for lang in (languages[int(rng.integers(len(languages)))] for _ in itertools.count())
        )
    records, clean_audio = [], []
    skipped = Counter()
    synth_cpu = 0.0
    renderings = _renderings(texts, spec["speakers"], spec["parallel"], rng)
    for i, (lang, text, translation, spk) in zip(range(SHARD_SIZE), renderings):
        pitch = spk["pitch"] + rng.integers(-JITTER["pitch"], JITTER["pitch"], endpoint=True)
        range_ = spk["range"] + rng.integers(-JITTER["range"], JITTER["range"], endpoint=True)
        rate = spk["rate"] * (1 + rng.uniform(-JITTER["rate"], JITTER["rate"]))
        utt_seed = int(rng.integers(2**31))
        t0 = time.process_time()
        engine.set_voice(f"{lang}+{spk['variant']}")
        engine.set_params(round(rate), pitch, range_)
        phones = sentence_phones(engine, text)
        if phones is None:
            skipped["no_phones"] += 1
            continue
        engine.seed(utt_seed)
        wav = engine.synth(text)
        synth_cpu += time.process_time() - t0
        if wav.size == 0 or not np.any(wav):
            skipped["no_audio"] += 1
            continue
        audio = soxr.resample(
            wav.astype(np.float32) / 32768.0, engine.rate, SAMPLE_RATE, quality="HQ"
        )
        uid = f"{split}-{index:05d}-{i:02d}"
        rel = f"audio/{split}/{spk['id']}/{uid}.flac"
        records.append(
            {
                "id": uid,
                "path": rel,
                "num_samples": int(audio.size),
                "speaker": spk["id"],
                "lang": lang,
                "text": text,
                "phones": " ".join(" ".join(w) + " |" for w in phones),
            }
        )
        if translation is not None:
            records[-1]["translation"] = translation
        clean_audio.append(audio)
    noisy = spec["noise_snr"] is not None or spec["reverb"]
    for rec, audio in zip(records, clean_audio):
        if noisy:
            degraded = reverberate(audio, rng) if spec["reverb"] else audio.copy()
            if spec["noise_snr"] is not None:
                rec["snr"] = _snr_of(spec["noise_snr"], rng)
                others = [a for a in clean_audio if a is not audio]
                noise = make_noise(audio.size, others, rng)
                degraded = degraded + noise_at_snr(noise, np.mean(audio**2), rec["snr"])
            peak = max(np.max(np.abs(degraded)), np.max(np.abs(audio)))
            gain = 0.99 / peak if peak > 0.99 else 1.0  # same gain on both: same scale
            audio = audio * gain
            rec["noisy_path"] = rec["path"].replace("audio/", "noisy/", 1)
            _write_flac(out / rec["noisy_path"], np.clip(degraded * gain, -1, 1))
        _write_flac(out / rec["path"], np.clip(audio, -1, 1))
    return {
        "split": split,
        "index": index,
        "records": records,
        "skipped": dict(skipped),
        "synth_cpu": synth_cpu,
        "cpu": time.process_time() - start_cpu,
    }
