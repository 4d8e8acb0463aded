"""The sentences the eSpeak NG corpus speaks: `faker` word lists of the language (real
words, random syntax) or a user's text file, normalised to what the synthesiser says, each
sentence in exactly one split."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

import numpy as np

SPLIT_FRACTION = {"train": 0.90, "valid": 0.05, "test": 0.05}
WORDS_PER_SENTENCE = (4, 13)  # inclusive; ~1.5-5 s at the speaking rates below
MAX_WORDS_PER_LINE = 30  # longer --text-file lines are skipped

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
    the synthesiser would read aloud are dropped, as are repeats. Split by `split_by_hash`.
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
    return split_by_hash(items, path)


def read_translations(path: str | os.PathLike, language: str) -> dict:
    """{split: [(language, text, translation), ...]} from a file of `source<TAB>translation`
    lines (data/sword.py writes one): the source is spoken in `language` and normalised as
    `read_text_file` does (lines it would drop are dropped), the translation is kept as
    written (NFC, runs of white space made one space). Lines without a tab or with an empty
    translation are dropped, as are repeats. Split by `split_by_hash` of the source."""
    items = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            source, sep, target = line.rstrip("\n").partition("\t")
            text = normalise_text(source)
            target = " ".join(unicodedata.normalize("NFC", target).split())
            if sep and target and text is not None and len(text.split()) <= MAX_WORDS_PER_LINE:
                items.add((language, text, target))
    return split_by_hash(items, path)


def split_by_hash(items, path) -> dict:
    """{split: items} of (lang, text, ...) tuples: ordered by a hash of the text, the first 5 %
    (at least one) go to test, the next 5 % to valid, the rest to train, so the held-out
    sentences do not depend on the line order of the file `path` they came from."""
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


def faker_sentences(language: str, split: str, rng: np.random.Generator):
    """Endless normalised sentences of `language` that belong to `split`."""
    from faker import Faker  # 0.13 s of locale tables that only the shard workers need

    fake = Faker(FAKER_LOCALES[language])
    fake.seed_instance(int(rng.integers(2**31)))
    while True:
        n = int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1], endpoint=True))
        text = normalise_text(fake.sentence(nb_words=n, variable_nb_words=False))
        if text and split_of_sentence(text) == split:
            yield text
