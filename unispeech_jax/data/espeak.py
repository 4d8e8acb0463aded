"""eSpeak NG, in-process: the library of the `espeakng-loader` wheel through ctypes (speech
and IPA phones), and the phones of a sentence cut into its words."""

from __future__ import annotations

import ctypes
import itertools
import os
import re

import espeakng_loader
import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def data_path() -> str:
    """The espeak-ng-data folder of the wheel."""
    return espeakng_loader.get_data_path()


def espeak_languages() -> set[str]:
    """Voice names eSpeak NG accepts as a language: the file names under espeak-ng-data/lang."""
    names = set()
    for _, _, files in os.walk(os.path.join(data_path(), "lang")):
        names.update(f.lower() for f in files)  # the library matches names caselessly
    return names


class ESpeak:
    """In-process libespeak-ng: `synth(text)` -> int16 at `self.rate`, `phonemes(text)`."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:  # one per process, whatever the number of callers
            cls._instance = super().__new__(cls)
            cls._instance._load()
        return cls._instance

    def _load(self):
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
