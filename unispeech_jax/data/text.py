"""Text side of the data: phone vocabularies and SentencePiece models.

Phone ids (see docs/ARCHITECTURE.md, "Label ids"):

    0 = <blank>   CTC blank, also the padding value of `phones`
    1 = <unk>
    2.. = the symbols of a fairseq dict file (`dict.phn.txt`) in file order

A fairseq dict file has one "<symbol> <count>" per line (the count is ignored here). `|`, the
word boundary, is an ordinary symbol.

SentencePiece models made by `train_char_model` reserve 0 = <pad>, 1 = <unk>, 2 = <s>,
3 = </s>, so that 0 is the padding value of every id tensor in the project.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

BLANK = "<blank>"
UNK = "<unk>"
BLANK_ID = 0
UNK_ID = 1
_RESERVED = (BLANK, UNK)


class UnknownPhoneError(ValueError):
    """A phone that is not in the vocabulary (raised by `PhoneVocab.encode`)."""

    def __init__(self, phone: str):
        super().__init__(f"phone {phone!r} is not in the vocabulary")
        self.phone = phone


class PhoneVocab:
    """Phone inventory: symbols <-> ids, ids 0/1 reserved for <blank>/<unk>."""

    def __init__(self, symbols: Sequence[str]):
        """`symbols`: the phones in id order, WITHOUT the two reserved entries."""
        self._symbols = [BLANK, UNK]
        self._index = {BLANK: BLANK_ID, UNK: UNK_ID}
        for s in symbols:
            if s in _RESERVED:
                continue
            if s in self._index:
                raise ValueError(f"duplicate phone {s!r} in vocabulary")
            if not s or any(c.isspace() for c in s):
                raise ValueError(f"invalid phone symbol {s!r}")
            self._index[s] = len(self._symbols)
            self._symbols.append(s)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PhoneVocab":
        """Reads a fairseq dict file ("<symbol> <count>" lines; blank lines ignored).

        Lines starting with `#fairseq:` flags and the reserved names are skipped.
        """
        symbols = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) > 3 or (len(fields) >= 2 and not fields[1].lstrip("-").isdigit()):
                    raise ValueError(f"{path}:{lineno}: expected '<symbol> <count>', got {line!r}")
                symbols.append(fields[0])
        return cls(symbols)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the non-reserved symbols as a fairseq dict (counts set to 1)."""
        Path(path).write_text("".join(f"{s} 1\n" for s in self._symbols[2:]), encoding="utf-8")

    @property
    def symbols(self) -> list[str]:
        """All symbols in id order, including <blank> and <unk>."""
        return list(self._symbols)

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    def index(self, symbol: str) -> int:
        return self._index[symbol]

    def encode(self, line: str, *, unknown: str = "raise") -> list[int]:
        """Space-separated phones -> ids.

        unknown: "raise" (UnknownPhoneError, the pipeline turns it into a counted skip or a
        DataError) or "unk" (map to <unk>).
        """
        ids = []
        for p in line.split():
            i = self._index.get(p)
            if i is None:
                if unknown == "unk":
                    i = UNK_ID
                else:
                    raise UnknownPhoneError(p)
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> space-separated phones. Id 0 (blank / padding) is dropped."""
        return " ".join(self._symbols[int(i)] for i in ids if int(i) != BLANK_ID)


# ----------------------------------------------------------------------------- SentencePiece

def train_char_model(texts: Iterable[str], out_prefix: str | os.PathLike, *,
                     user_defined_symbols: Sequence[str] = (),
                     character_coverage: float = 1.0) -> Path:
    """Trains a character SentencePiece model on `texts`; returns `<out_prefix>.model`.

    Writes `<out_prefix>.model` and `<out_prefix>.vocab`. Ids: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>,
    then the user defined symbols, then characters by frequency. Training is deterministic.
    """
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    lines = [t.strip() for t in texts if t.strip()]
    if not lines:
        raise ValueError("train_char_model: no non-empty text")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(out_prefix),
        model_type="char",
        vocab_size=_char_vocab_size(lines, len(user_defined_symbols)),
        character_coverage=character_coverage,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        user_defined_symbols=list(user_defined_symbols),
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return out_prefix.with_suffix(".model")


def _char_vocab_size(lines: Sequence[str], n_user: int) -> int:
    chars = set()
    for line in lines:
        chars.update(line.replace(" ", "\u2581"))
    return len(chars) + 4 + n_user


def load_sp(path: str | os.PathLike) -> spm.SentencePieceProcessor:
    """Loads a SentencePiece model file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {path}")
    return spm.SentencePieceProcessor(model_file=str(path))


def sp_encode(sp: spm.SentencePieceProcessor, text: str, *, add_eos: bool = False) -> list[int]:
    """Text -> ids (appends </s> when `add_eos`)."""
    ids = sp.encode(text, out_type=int)
    if add_eos:
        ids.append(sp.eos_id())
    return ids


def sp_decode(sp: spm.SentencePieceProcessor, ids: Iterable[int]) -> str:
    """Ids -> text. Padding, <s> and </s> are dropped."""
    drop = {sp.pad_id(), sp.bos_id(), sp.eos_id()}
    return sp.decode([int(i) for i in ids if int(i) not in drop])
