"""A real speech corpus made locally with eSpeak NG, because no data set can be downloaded.

    python -m unispeech_jax.data.corpus --out DIR [--hours H] [--languages en-us,es,de]
        [--noise-snr DB] [--reverb] [--seed S] [--workers W] [--text-file F]

Text comes from `faker` word lists (real words of the language, random syntax) or from a
user file; eSpeak NG (the library shipped by the `espeakng-loader` wheel, driven in-process
through ctypes) speaks it in many voices and gives its IPA phones. The layout written to
DIR is the "Corpus on disk" contract of docs/ARCHITECTURE.md.

How the work is cut up, and why the output is byte-identical for the same arguments:
- Every split (train/valid/test) is a sequence of *shards* of `SHARD_SIZE` utterances. A
  shard's content depends only on (seed, split, shard index), never on the worker count.
- libespeak-ng keeps global state that leaks from one utterance into the next (filters,
  echo buffers), so every shard runs in a fresh process ('spawn', one task per child) and
  the library's random generator is reseeded before every utterance.
- A split keeps the shortest prefix of its shard sequence (cut inside the last shard) that
  reaches its duration target and minimum utterance count; audio of shards computed
  beyond that is deleted. Which extra shards ran depends on timing, what is kept does not.
- Held-out splits: valid and test use voice families never heard in training, and every
  sentence belongs to one split only, chosen by a hash of its text.

Main entry points: `generate(out, ...)` writes a corpus into a directory;
`ensure_corpus(...)` returns a cached corpus under $UNISPEECH_JAX_CACHE, making it first.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import ctypes
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import pathlib
import re
import resource
import sys
import time
import unicodedata
from collections import Counter

import numpy as np

from unispeech_jax.data.cache import build_atomically, cache_dir

FORMAT_VERSION = 1
SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")
SHARD_SIZE = 32
MIN_EVAL_UTTERANCES = 32  # valid and test get at least this many, however small --hours
MIN_TRAIN_UTTERANCES = 16
SPLIT_FRACTION = {"train": 0.90, "valid": 0.05, "test": 0.05}
WORDS_PER_SENTENCE = (4, 13)  # inclusive; ~1.5-5 s at the speaking rates below
MAX_WORDS_PER_LINE = 30  # longer --text-file lines are skipped

# ---------------------------------------------------------------------------------------
# Voices
# ---------------------------------------------------------------------------------------
# Variant files live in espeak-ng-data/voices/!v. Families group variants that share a
# template (same author, same formant recipe): a held-out split must not hear a close
# relative of a training voice. Left out on purpose, because they are hard to understand
# or are effects rather than voices: whisper, whisperf, caleb (unvoiced: breath only);
# croak, Demonic, Tweaky, zac, announcer, grandma (extreme pitch, flutter or roughness);
# robosoft*, UniRobot, anikaRobot, RicishayMax* (robot effects, long echoes); fast (a rate
# test, not a voice); boris, kaukovalta, victor, Storm (formants scaled by 40-60 %);
# aunty (a copy of f4's formant recipe, so not "unheard"); the files written as long
# commented templates (ian, john, norbert, pablo, "Mr serious"), which were not checked.
VOICE_FAMILIES = {
    "train": {
        "espeak-male": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"],
        "espeak-female": ["f1", "f2", "f3", "f4", "f5"],
        "pt-template": ["Diogo", "Hugo", "michel", "anika"],
        "klatt-people": ["adam", "benjamin", "david", "edward"],
        "iven": ["iven", "iven3"],
        "mario": ["Mario", "gustave", "marcelo"],
        "misc": [
            "Alex",
            "Andy",
            "Annie",
            "Andrea",
            "Alicia",
            "Denis",
            "antonio",
            "max",
            "paul",
            "travis",
            "Gene",
            "grandpa",
            "Mike",
            "pedro",
            "ed",
            "Jacky",
        ],
    },
    # Held out: the rob/robert/quincy template and the linda/belinda template.
    "valid": {"rob": ["rob", "robert", "quincy"], "linda": ["linda", "belinda"]},
    # Held out: the plain Klatt synthesiser modes 1-4 (training only hears Klatt voices
    # with reshaped formants) and the steph family (female, spectrally tilted).
    "test": {
        "klatt": ["klatt", "klatt2", "klatt3", "klatt4"],
        "steph": ["steph", "steph2", "steph3"],
    },
}
SPEAKERS_PER_VARIANT = {"train": 3, "valid": 2, "test": 2}
# Speaker = variant x (pitch, range, rate); eSpeak's 50 means the voice's own default.
PITCH_RANGE, RANGE_RANGE, RATE_RANGE = (35, 65), (30, 80), (145, 200)
JITTER = {"pitch": 4, "range": 6, "rate": 0.06}  # per utterance: +-abs, +-abs, +-fraction

# faker locales whose lorem provider holds real words of the language (a locale without
# one silently falls back to Latin lorem ipsum, so it is not listed).
FAKER_LOCALES = {
    "en-us": "en_US",
    "en": "en_US",
    "en-029": "en_US",
    "es": "es_ES",
    "es-419": "es_MX",
    "de": "de_DE",
    "fr": "fr_FR",
    "it": "it_IT",
    "pl": "pl_PL",
    "ru": "ru_RU",
    "nl": "nl_NL",
    "cs": "cs_CZ",
    "da": "da_DK",
    "el": "el_GR",
    "uk": "uk_UA",
    "hy": "hy_AM",
    "fa": "fa_IR",
    "vi": "vi_VN",
    "az": "az_AZ",
    "mk": "mk_MK",
    "bn": "bn_BD",
}


def _data_path() -> str:
    import espeakng_loader

    return espeakng_loader.get_data_path()


def espeak_languages() -> set[str]:
    """Voice names eSpeak NG accepts as a language: the file names under espeak-ng-data/lang."""
    names = set()
    for _, _, files in os.walk(os.path.join(_data_path(), "lang")):
        names.update(f.lower() for f in files)  # the library matches names caselessly
    return names


def speakers_for_split(split: str, seed: int) -> list[dict]:
    """The speakers of one split: every variant of its families x a few (pitch, range, rate)."""
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
    speakers = []
    for family, variants in VOICE_FAMILIES[split].items():
        for variant in variants:
            for k in range(SPEAKERS_PER_VARIANT[split]):
                speakers.append(
                    {
                        "id": f"{variant}-{k}",
                        "family": family,
                        "variant": variant,
                        "pitch": int(rng.integers(*PITCH_RANGE, endpoint=True)),
                        "range": int(rng.integers(*RANGE_RANGE, endpoint=True)),
                        "rate": int(rng.integers(*RATE_RANGE, endpoint=True)),
                    }
                )
    return speakers


# ---------------------------------------------------------------------------------------
# eSpeak NG through ctypes (one instance per process: the library is global state)
# ---------------------------------------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class ESpeak:
    """In-process libespeak-ng: `synth(text)` -> int16 at `self.rate`, `phonemes(text)`."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:  # one per process, whatever the number of callers
            cls._instance = super().__new__(cls)
            cls._instance._load()
        return cls._instance

    def _load(self):
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        self.rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._seed_fn = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed_fn is not None:
            self._seed_fn.argtypes = [ctypes.c_long]
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: C holds it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self._voice = None

    def _on_audio(self, wav, num_samples, events):
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        return 0  # 0 = go on

    def set_voice(self, name: str) -> None:
        if name != self._voice:
            if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {name!r}")
            self._voice = name

    def set_params(self, rate: int, pitch: int, range_: int) -> None:
        for key, value in (("rate", rate), ("pitch", pitch), ("range", range_)):
            self.lib.espeak_SetParameter(_PARAM[key], int(value), 0)

    def seed(self, value: int) -> None:
        if self._seed_fn is not None:
            self._seed_fn(value)

    def synth(self, text: str) -> np.ndarray:
        """Speaks `text` with the current voice; int16 [samples] at `self.rate` Hz."""
        self._chunks = []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if not self._chunks:
            return np.zeros(0, np.int16)
        return np.concatenate(self._chunks)

    def phonemes(self, text: str, separator: str = "_") -> str:
        """IPA of `text`, phones joined by `separator`, words by spaces, all clauses."""
        mode = _PHONEMES_IPA | (ord(separator) << 8)  # bits 8-23: the phone separator
        buf = ctypes.create_string_buffer(text.encode())
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        clauses = []
        while ptr.value:  # one clause per call; the library advances ptr, NULL at the end
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
            if out:
                clauses.append(out.decode("utf-8", "replace"))
        return " ".join(clauses)


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
# A line with any of these is dropped rather than edited: the synthesiser would read them
# aloud ("percent", "five") and the transcript would no longer match what was spoken.
_SPOKEN_SYMBOLS = re.compile(r"[\d%$€£¥&@#+=§°*<>|~^\\_{}\[\]]")


def normalise_text(line: str) -> str | None:
    """Lowercase words separated by single spaces, punctuation removed; None if unusable."""
    line = unicodedata.normalize("NFC", line).strip().lower()
    if not line or _SPOKEN_SYMBOLS.search(line):
        return None
    line = re.sub(r"[-‐‑–—/]", " ", line).replace("’", "'")
    words = _WORD.findall(line)
    return " ".join(words) if words else None


def split_of_sentence(text: str) -> str:
    """Each distinct generated sentence belongs to exactly one split (5 % valid, 5 % test)."""
    bucket = _text_hash(text) % 20
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def read_text_file(path: str | os.PathLike, languages: list[str]) -> dict:
    """{split: [(lang, text), ...]} from a file of one sentence per line.

    A line may start with `<language><TAB>` to name its eSpeak language (one of
    `languages`); other lines belong to the first language. Lines with digits or symbols
    the synthesiser would read aloud are dropped, as are repeats. Ordered by a hash of the
    text, the first 5 % (at least one) go to test, the next 5 % to valid, the rest to
    train, so the held-out sentences do not depend on the line order.
    """
    items = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            lang, sep, rest = line.rstrip("\n").partition("\t")
            if not sep or lang.lower() not in languages:
                lang, rest = languages[0], line
            text = normalise_text(rest)
            if text is not None and len(text.split()) <= MAX_WORDS_PER_LINE:
                items.add((lang.lower(), text))
    if len(items) < 3:
        raise ValueError(
            f"{path}: {len(items)} usable sentences; at least 3 are needed (one per split)"
        )
    items = sorted(items, key=lambda item: (_text_hash(item[1]), item))
    n_eval = max(1, round(SPLIT_FRACTION["test"] * len(items)))
    return {
        "test": items[:n_eval],
        "valid": items[n_eval : 2 * n_eval],
        "train": items[2 * n_eval :],
    }


def _faker_sentences(language: str, split: str, rng: np.random.Generator):
    """Endless normalised sentences of `language` that belong to `split`."""
    from faker import Faker

    fake = Faker(FAKER_LOCALES[language])
    fake.seed_instance(int(rng.integers(2**31)))
    while True:
        n = int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1], endpoint=True))
        text = normalise_text(fake.sentence(nb_words=n, variable_nb_words=False))
        if text and split_of_sentence(text) == split:
            yield text


# ---------------------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------------------
_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")
_DROP_MARKS = str.maketrans("", "", "ˈˌ-‿")  # stress, hyphen and linking marks


def ipa_words(raw: str, separator: str = "_") -> list[list[str]]:
    """eSpeak's separated IPA -> [[phone, ...] per word]; length marks stay on their phone."""
    raw = _LANG_SWITCH.sub("", raw).translate(_DROP_MARKS)
    words = [[p for p in word.split(separator) if p] for word in raw.split()]
    return [w for w in words if w]


def _edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _best_split(phones: list[str], refs: list[list[str]]) -> tuple[float, list[list[str]]]:
    """Cuts `phones` into len(refs) non-empty pieces closest (edit distance) to `refs`."""
    k = len(refs)
    if len(phones) < k:
        return float("inf"), []
    best = (float("inf"), [])
    for cuts in itertools.combinations(range(1, len(phones)), k - 1):
        bounds = (0,) + cuts + (len(phones),)
        pieces = [phones[bounds[i] : bounds[i + 1]] for i in range(k)]
        cost = sum(_edit_distance(p, r) for p, r in zip(pieces, refs))
        if cost < best[0]:
            best = (cost, pieces)
    return best


def align_to_words(tokens: list[list[str]], words: list[str], isolated) -> list[list[str]] | None:
    """Phones of each word, when eSpeak's word groups differ from the text's words.

    eSpeak joins some words in connected speech ("of the" -> ʌvðə) and may split others.
    `tokens` are its phone groups for the whole sentence, `isolated(word)` the phones of one
    word said alone. A monotone alignment (one group -> up to 3 words, or up to 3 groups ->
    one word) minimising the edit distance to the isolated pronunciations decides the
    cuts. Returns None if no alignment exists.
    """
    if len(tokens) == len(words):
        return tokens
    refs = [isolated(w) for w in words]
    n_tok, n_wrd = len(tokens), len(words)
    cost = {(0, 0): (0.0, None, None)}  # (i tokens, j words) -> (cost, previous, pieces)
    for i in range(n_tok + 1):
        for j in range(n_wrd + 1):
            if (i, j) not in cost or (i, j) == (n_tok, n_wrd):
                continue
            base = cost[(i, j)][0]
            moves = []
            for k in range(1, 4):  # token i covers words j..j+k-1
                if i < n_tok and j + k <= n_wrd:
                    c, pieces = _best_split(tokens[i], refs[j : j + k])
                    moves.append(((i + 1, j + k), c + 0.5 * (k - 1), pieces))
            for k in range(2, 4):  # tokens i..i+k-1 form word j
                if i + k <= n_tok and j < n_wrd:
                    joined = [p for t in tokens[i : i + k] for p in t]
                    moves.append(
                        ((i + k, j + 1), _edit_distance(joined, refs[j]) + 0.5 * (k - 1), [joined])
                    )
            for state, c, pieces in moves:
                if base + c < cost.get(state, (float("inf"),))[0]:
                    cost[state] = (base + c, (i, j), pieces)
    if (n_tok, n_wrd) not in cost or cost[(n_tok, n_wrd)][0] == float("inf"):
        return None
    out, state = [], (n_tok, n_wrd)
    while state != (0, 0):
        _, prev, pieces = cost[state]
        out = pieces + out
        state = prev
    return out


def sentence_phones(engine: ESpeak, text: str) -> list[list[str]] | None:
    """Phones per word of `text` in the engine's current language; None if not alignable."""
    tokens = ipa_words(engine.phonemes(text))
    if not tokens:
        return None

    def isolated(word):
        return [p for w in ipa_words(engine.phonemes(word)) for p in w]

    return align_to_words(tokens, text.split(), isolated)


# ---------------------------------------------------------------------------------------
# Noise and reverberation (synthetic, seeded: nothing to download)
# ---------------------------------------------------------------------------------------
def _coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    noise = np.fft.irfft(spec / f ** (exponent / 2), n)
    return noise / (np.std(noise) + 1e-12)


def make_noise(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """White, pink, brown or babble (other utterances of the shard, looped and summed)."""
    kind = ("white", "pink", "brown", "babble")[int(rng.integers(4))]
    if kind == "babble" and others:
        noise = np.zeros(n)
        for idx in rng.choice(len(others), size=min(4, len(others)), replace=False):
            other = others[idx]
            noise += np.roll(np.resize(other, n), int(rng.integers(n)))
        if np.std(noise) > 0:
            return noise / np.std(noise)
    return _coloured_noise(n, {"white": 0.0, "pink": 1.0}.get(kind, 2.0), rng)


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an exponentially decaying noise room response (RT60 0.2-0.7 s)."""
    rt60 = rng.uniform(0.2, 0.7)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    rir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.3)
    rir[0] = 1.0  # direct path
    nfft = 1 << (len(x) + len(rir) - 2).bit_length()  # linear (not circular) convolution
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
    return y * (np.std(x) / (np.std(y) + 1e-12))


# ---------------------------------------------------------------------------------------
# One shard (runs in a fresh worker process)
# ---------------------------------------------------------------------------------------
def _shard_seed(seed: int, split: str, index: int) -> list[int]:
    return [seed, SPLITS.index(split), index]


def _write_flac(path: pathlib.Path, audio: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def run_shard(spec: dict) -> dict:
    """Synthesises one shard, writes its FLAC files, returns its utterance records."""
    import soxr

    start_cpu = time.process_time()
    split, index = spec["split"], spec["index"]
    rng = np.random.default_rng(_shard_seed(spec["seed"], split, index))
    engine = ESpeak()
    out = pathlib.Path(spec["out"])
    languages = spec["languages"]
    if spec["texts"] is not None:
        texts = iter(spec["texts"])
    else:
        streams = {lang: _faker_sentences(lang, split, rng) for lang in languages}
        texts = (
            (lang, next(streams[lang]))
            for lang in (languages[int(rng.integers(len(languages)))] for _ in itertools.count())
        )
    records, clean_audio = [], []
    skipped = Counter()
    synth_cpu = 0.0
    for i, (lang, text) in zip(range(SHARD_SIZE), texts):
        spk = spec["speakers"][int(rng.integers(len(spec["speakers"])))]
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
        clean_audio.append(audio)
    noisy = spec["noise_snr"] is not None or spec["reverb"]
    for rec, audio in zip(records, clean_audio):
        if noisy:
            degraded = reverberate(audio, rng) if spec["reverb"] else audio.copy()
            if spec["noise_snr"] is not None:
                others = [a for a in clean_audio if a is not audio]
                noise = make_noise(audio.size, others, rng)
                power = np.mean(audio**2)
                degraded = degraded + noise * np.sqrt(power / 10 ** (spec["noise_snr"] / 10))
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


# ---------------------------------------------------------------------------------------
# The whole corpus
# ---------------------------------------------------------------------------------------
def _check_languages(languages: list[str], text_file) -> None:
    variants = os.listdir(os.path.join(_data_path(), "voices", "!v"))
    missing = [
        v
        for fams in VOICE_FAMILIES.values()
        for vs in fams.values()
        for v in vs
        if v not in variants
    ]
    if missing:
        raise RuntimeError(f"this espeak-ng-data lacks voice variants {missing}")
    known = espeak_languages()
    for lang in languages:
        if lang not in known:
            raise ValueError(
                f"unknown language {lang!r}: eSpeak NG has no voice of that "
                f"name (examples: en-us, es, de, fr)"
            )
        if text_file is None and lang not in FAKER_LOCALES:
            raise ValueError(
                f"no word list for language {lang!r}: faker knows "
                f"{', '.join(sorted(FAKER_LOCALES))}; give --text-file"
            )


class _SplitPlan:
    """Keeps the shortest prefix of a split's shards reaching its targets."""

    def __init__(self, split: str, hours: float):
        self.split = split
        self.target_s = hours * 3600 * SPLIT_FRACTION[split]
        self.min_utts = MIN_TRAIN_UTTERANCES if split == "train" else MIN_EVAL_UTTERANCES
        self.kept, self.seconds, self.done = [], 0.0, False
        self.next_submit = self.next_consume = 0
        self.results: dict[int, dict] = {}
        self.drop: list[dict] = []
        self.skipped = Counter()

    def consume(self, progress) -> None:
        while not self.done and self.next_consume in self.results:
            result = self.results.pop(self.next_consume)
            self.next_consume += 1
            self.skipped.update(result["skipped"])
            for rec in result["records"]:
                if self.done:
                    self.drop.append(rec)
                    continue
                self.kept.append(rec)
                seconds = rec["num_samples"] / SAMPLE_RATE
                self.seconds += seconds
                progress.total = max(progress.total, progress.n + seconds)  # estimate was low
                progress.update(seconds)
                self.done = self.seconds >= self.target_s and len(self.kept) >= self.min_utts

    def wants_more(self, in_flight: int, mean_utt_s: float) -> bool:
        need_s = self.target_s - self.seconds - in_flight * SHARD_SIZE * mean_utt_s
        need_n = self.min_utts - len(self.kept) - in_flight * SHARD_SIZE
        return not self.done and (need_s > 0 or need_n > 0)


def _texts_for_shard(by_split: dict, split: str, index: int, seed: int) -> list:
    """The (lang, text) list of one shard in --text-file mode (cycles if the file is short)."""
    pool = by_split[split]
    order = np.random.default_rng([seed, 11, SPLITS.index(split)]).permutation(len(pool))
    start = index * SHARD_SIZE
    return [pool[order[(start + k) % len(pool)]] for k in range(SHARD_SIZE)]


def _run_shards(
    out: pathlib.Path,
    hours: float,
    languages: list[str],
    noise_snr,
    reverb,
    seed: int,
    workers: int,
    by_split,
    quiet: bool,
):
    """Runs shards in `workers` fresh processes until every split has what it needs.

    Returns ({split: plan}, (seconds of audio eSpeak made, CPU seconds it took)).
    """
    from tqdm import tqdm

    from unispeech_jax.data import corpus as this_module  # picklable under `python -m`

    plans = {s: _SplitPlan(s, hours) for s in ("test", "valid", "train")}
    speakers = {s: speakers_for_split(s, seed) for s in SPLITS}
    expected_s = sum(max(p.target_s, 3.0 * p.min_utts) for p in plans.values())
    progress = tqdm(
        total=expected_s,
        desc="speaking",
        disable=quiet,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
        "of audio [{elapsed}<{remaining}]",
    )
    in_flight: dict[cf.Future, str] = {}
    durations = [3.0]  # a prior for the mean utterance length
    empty_in_a_row = Counter()
    espeak_audio_s = espeak_cpu_s = 0.0
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        while True:
            mean_s = float(np.mean(durations))
            for split, plan in plans.items():  # keep ~2 shards per worker queued
                while len(in_flight) < 2 * workers and plan.wants_more(
                    sum(s == split for s in in_flight.values()), mean_s
                ):
                    texts = (
                        None
                        if by_split is None
                        else _texts_for_shard(by_split, split, plan.next_submit, seed)
                    )
                    spec = {
                        "split": split,
                        "index": plan.next_submit,
                        "seed": seed,
                        "out": str(out),
                        "languages": languages,
                        "speakers": speakers[split],
                        "noise_snr": noise_snr,
                        "reverb": reverb,
                        "texts": texts,
                    }
                    in_flight[pool.submit(this_module.run_shard, spec)] = split
                    plan.next_submit += 1
            if not in_flight:
                break
            finished, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                plan = plans[in_flight.pop(future)]
                result = future.result()
                seconds = [r["num_samples"] / SAMPLE_RATE for r in result["records"]]
                durations += seconds
                espeak_audio_s += sum(seconds)
                espeak_cpu_s += result["synth_cpu"]
                empty_in_a_row[plan.split] = (
                    0 if result["records"] else empty_in_a_row[plan.split] + 1
                )
                if empty_in_a_row[plan.split] >= 4:
                    raise RuntimeError(
                        f"{plan.split}: eSpeak NG gave no usable utterance "
                        f"in {4 * SHARD_SIZE} sentences in a row"
                    )
                if plan.done:
                    plan.drop.extend(result["records"])
                else:
                    plan.results[result["index"]] = result
                    plan.consume(progress)
    progress.close()
    for plan in plans.values():  # audio of shards beyond what each split keeps
        plan.drop.extend(r for res in plan.results.values() for r in res["records"])
        for rec in plan.drop:
            for key in ("path", "noisy_path"):
                if key in rec:
                    (out / rec[key]).unlink(missing_ok=True)
    for folder in sorted(out.glob("*/*/*"), reverse=True):  # speakers left without files
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return {s: plans[s] for s in SPLITS}, (espeak_audio_s, espeak_cpu_s)


def _phone_dict(lines) -> str:
    counts = Counter(p for line in lines for p in line.split())
    return "".join(f"{p} {c}\n" for p, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])))


def _write_sentencepiece(out: pathlib.Path, texts: list[str]) -> None:
    import sentencepiece as spm

    chars = {c for t in texts for c in t if c != " "}
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="char",
        vocab_size=len(chars) + 4,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    (out / "spm_char.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(
        f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size())
    )
    (out / "spm_char.vocab").write_text(vocab, encoding="utf-8")


def _file_sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def generate(
    out,
    hours: float = 1.0,
    languages=("en-us",),
    noise_snr: float | None = None,
    reverb: bool = False,
    seed: int = 0,
    workers: int | None = None,
    text_file=None,
    root: str | os.PathLike | None = None,
    quiet: bool = False,
) -> dict:
    """Writes a corpus into the directory `out` (created; must be empty if it exists).

    `root` is the directory named on the first line of the manifests (default: `out`,
    absolute); `ensure_corpus` passes the final cache path while writing to a temp dir.
    Returns the corpus.json content.
    """
    out = pathlib.Path(out)
    languages = [languages] if isinstance(languages, str) else list(languages)
    languages = [lang.lower() for lang in languages]
    if not languages:
        raise ValueError("no language given")
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    _check_languages(languages, text_file)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    by_split = read_text_file(text_file, languages) if text_file is not None else None
    wall0 = time.perf_counter()
    cpu0 = _cpu_seconds()

    plans, (espeak_audio_s, espeak_cpu_s) = _run_shards(
        out, hours, languages, noise_snr, reverb, seed, workers, by_split, quiet
    )

    root_line = str(pathlib.Path(root if root is not None else out).absolute()) + "\n"
    noisy = noise_snr is not None or reverb
    for split, plan in plans.items():
        recs = plan.kept
        audio_key = "noisy_path" if noisy else "path"
        files = {
            "tsv": root_line + "".join(f"{r[audio_key]}\t{r['num_samples']}\n" for r in recs),
            "phn": "".join(r["phones"] + "\n" for r in recs),
            "wrd": "".join(r["text"] + "\n" for r in recs),
            "spk": "".join(r["speaker"] + "\n" for r in recs),
            "lang": "".join(r["lang"] + "\n" for r in recs),
        }
        if noisy:
            files["clean"] = "".join(r["path"] + "\n" for r in recs)
        for ext, content in files.items():
            (out / f"{split}.{ext}").write_text(content, encoding="utf-8")
    all_recs = [r for p in plans.values() for r in p.kept]
    (out / "dict.phn.txt").write_text(_phone_dict(r["phones"] for r in all_recs), "utf-8")
    for lang in languages:
        lines = [r["phones"] for r in all_recs if r["lang"] == lang]
        (out / f"dict.phn.{lang}.txt").write_text(_phone_dict(lines), "utf-8")
    _write_sentencepiece(out, [r["text"] for r in plans["train"].kept])

    skipped = Counter()
    for plan in plans.values():
        skipped.update(plan.skipped)
    total_s = sum(p.seconds for p in plans.values())
    speakers = {s: speakers_for_split(s, seed) for s in SPLITS}
    info = {
        "format_version": FORMAT_VERSION,
        "arguments": {
            "hours": hours,
            "languages": languages,
            "noise_snr": noise_snr,
            "reverb": reverb,
            "seed": seed,
            "text_file": None
            if text_file is None
            else {"name": os.path.basename(str(text_file)), "sha256": _file_sha256(text_file)},
        },
        "sample_rate": SAMPLE_RATE,
        "hours": round(total_s / 3600, 6),
        "voices": {s: sorted({v for vs in VOICE_FAMILIES[s].values() for v in vs}) for s in SPLITS},
        "voice_families": VOICE_FAMILIES,
        "speakers": speakers,
        "splits": {
            s: {
                "utterances": len(p.kept),
                "seconds": round(p.seconds, 3),
                "hours": round(p.seconds / 3600, 6),
                "speakers_used": len({r["speaker"] for r in p.kept}),
                "languages": dict(sorted(Counter(r["lang"] for r in p.kept).items())),
            }
            for s, p in plans.items()
        },
        "skipped": {"no_audio": skipped["no_audio"], "no_phones": skipped["no_phones"]},
        "phones": len(_phone_dict(r["phones"] for r in all_recs).splitlines()),
    }
    # Written last: its presence marks a complete corpus.
    (out / "corpus.json").write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    wall = time.perf_counter() - wall0
    cpu = _cpu_seconds() - cpu0
    if not quiet:
        n_skip = sum(info["skipped"].values())
        print(
            f"wrote {out}: {total_s / 3600:.3f} h, "
            + ", ".join(f"{s} {info['splits'][s]['utterances']}" for s in SPLITS)
            + f" utterances; skipped {n_skip} sentences {info['skipped']}",
            file=sys.stderr,
        )
        print(
            f"speed: {total_s / max(cpu, 1e-9):.0f} audio s per CPU s "
            f"({total_s:.0f} s audio, {cpu:.1f} CPU s, {wall:.1f} s wall, "
            f"{workers} workers); eSpeak NG alone (text to phones and 22 kHz audio): "
            f"{espeak_audio_s / max(espeak_cpu_s, 1e-9):.0f} audio s per CPU s",
            file=sys.stderr,
        )
    return info


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the shard workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------
def corpus_key(hours, languages, noise_snr=None, reverb=False, seed=0, text_file=None) -> str:
    """Hash of everything that changes the corpus bytes (not the worker count)."""
    languages = [languages] if isinstance(languages, str) else list(languages)
    languages = [lang.lower() for lang in languages]
    key = {
        "format": FORMAT_VERSION,
        "hours": float(hours),
        "languages": languages,
        "noise_snr": None if noise_snr is None else float(noise_snr),
        "reverb": bool(reverb),
        "seed": int(seed),
        "text": None if text_file is None else _file_sha256(text_file),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ensure_corpus(
    hours: float = 1.0,
    languages=("en-us",),
    noise_snr: float | None = None,
    reverb: bool = False,
    seed: int = 0,
    workers: int | None = None,
    text_file=None,
) -> pathlib.Path:
    """The corpus directory for these arguments, generated on first use.

    Lives in $UNISPEECH_JAX_CACHE/corpus/<hash>. A corpus is written into a temporary
    sibling and renamed into place when complete, so a half-written directory is never
    seen under the final name; a final directory without corpus.json (damaged by hand) is
    set aside and rebuilt. Two processes racing both generate; the first rename wins and
    the loser deletes its copy.
    """
    base = cache_dir() / "corpus"
    final = base / corpus_key(hours, languages, noise_snr, reverb, seed, text_file)
    return build_atomically(
        final,
        "corpus.json",
        lambda tmp: generate(
            tmp,
            hours=hours,
            languages=languages,
            noise_snr=noise_snr,
            reverb=reverb,
            seed=seed,
            workers=workers,
            text_file=text_file,
            root=final,
        ),
    )


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m unispeech_jax.data.corpus",
        description="Generate a local speech corpus with eSpeak NG (see docs/ARCHITECTURE.md).",
    )
    parser.add_argument("--out", required=True, help="output directory (new or empty)")
    parser.add_argument("--hours", type=float, default=1.0, help="total audio, all splits")
    parser.add_argument(
        "--languages", default="en-us", help="comma-separated eSpeak NG voices, e.g. en-us,es,de"
    )
    parser.add_argument(
        "--noise-snr",
        type=float,
        default=None,
        help="also write noisy copies at this SNR (dB), with .clean lists",
    )
    parser.add_argument("--reverb", action="store_true", help="also reverberate the copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument(
        "--text-file",
        default=None,
        help="sentences, one per line (optionally 'lang<TAB>sentence'), "
        "instead of faker word lists",
    )
    args = parser.parse_args(argv)
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    try:
        generate(
            args.out,
            hours=args.hours,
            languages=languages,
            noise_snr=args.noise_snr,
            reverb=args.reverb,
            seed=args.seed,
            workers=args.workers,
            text_file=args.text_file,
        )
    except (ValueError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
