"""Text side of the data: phone vocabularies, SentencePiece models, text infilling noise.

Phone ids (see docs/ARCHITECTURE.md, "Label ids"):

    0 = <blank>   CTC blank, also the padding value of `phones`
    1 = <unk>
    2.. = the symbols of a fairseq dict file (`dict.phn.txt`) in file order

A fairseq dict file has one "<symbol> <count>" per line (the count is ignored here). `|`, the
word boundary, is an ordinary symbol.

Text ids are the SentencePiece model's own ids, whatever it reserves (`train_char_model`:
0 = <pad>, 1 = <unk>, 2 = <s>, 3 = </s>; the eSpeak corpus's `spm_char.model`: 0 = <unk>,
1 = <s>, 2 = </s> and no pad). What a model lacks gets the next ids past its vocabulary:
first the infilling mask (`mask_token_id`), then the padding id (`pad_token_id`). Text tensors
are padded with `pad_token_id`, so padding never equals a real token, and every text tensor
comes with a mask that the models and losses use; `text_vocab_size` counts all these ids.

Text infilling (`infill_noise`, SpeechT5 text pre-training, SPEC §3): ~30 % of the tokens are
masked in spans with Poisson(3.5) lengths, each span becomes one token (the mask token, or a
random token 10 % of the time), and the decoder reconstructs the original.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
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
    def load(cls, path: str | os.PathLike) -> PhoneVocab:
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


def letters(text: str) -> str:
    """Words -> fairseq letter units (`data.labels='ltr'`): 'hi you' -> 'H I | Y O U |'."""
    return " ".join(" ".join(list(w)) + " |" for w in text.upper().split())


def letter_words(units: str) -> str:
    """Letter units -> words, `letters` undone: 'H I | Y O U |' -> 'HI YOU'."""
    return " ".join("".join(units.split()).replace("|", " ").split())


# ----------------------------------------------------------------------------- SentencePiece


def train_char_model(
    texts: Iterable[str],
    out_prefix: str | os.PathLike,
    *,
    user_defined_symbols: Sequence[str] = (),
    character_coverage: float = 1.0,
) -> Path:
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
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
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
    """Ids -> text. Padding (`pad_token_id`), <s> and </s> are dropped."""
    drop = {pad_token_id(sp), sp.bos_id(), sp.eos_id()}
    return sp.decode([int(i) for i in ids if int(i) not in drop])


def mask_token_id(sp: spm.SentencePieceProcessor) -> int:
    """Id of the infilling mask token: the model's `<mask>` piece if it has one, else the first
    id past the SentencePiece vocabulary (the text embedding then has `text_vocab_size` rows)."""
    i = sp.piece_to_id("<mask>")
    return i if sp.id_to_piece(i) == "<mask>" else sp.get_piece_size()


def pad_token_id(sp: spm.SentencePieceProcessor) -> int:
    """Padding value of text tensors: the model's pad id if it has one, else the first id past
    the vocabulary and the mask token (a model without <pad> reports pad_id() == -1)."""
    return sp.pad_id() if sp.pad_id() >= 0 else max(sp.get_piece_size(), mask_token_id(sp) + 1)


def text_vocab_size(sp: spm.SentencePieceProcessor) -> int:
    """Rows of a text embedding that covers the SentencePiece ids, the mask and the pad id."""
    return max(sp.get_piece_size(), mask_token_id(sp) + 1, pad_token_id(sp) + 1)


def ordinary_ids(sp: spm.SentencePieceProcessor) -> list[int]:
    """Ids of real text pieces (not control symbols, not unknown, not the mask): what a random
    replacement in `infill_noise` may become."""
    mask = mask_token_id(sp)
    return [
        i
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or i == mask)
    ]


# ----------------------------------------------------------------------------- text infilling


def infill_spans(
    rng: np.random.Generator,
    n: int,
    *,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Where BART-style text infilling masks a sequence of `n` maskable tokens.

    Returns (starts, lengths), int64 [m] each, sorted by start: span j covers tokens
    [starts[j], starts[j] + lengths[j]). Spans never overlap; together they cover
    ceil(n * mask_ratio) tokens. Lengths are Poisson(poisson_lambda) draws (the last draw is
    cut to the budget). A length-0 span is an insertion before token starts[j]; insertions are
    kept only while the noised text stays no longer than the original, so that source and
    target share one padded length.
    """
    budget = math.ceil(n * mask_ratio) if n else 0
    if budget == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lengths: list[int] = []
    total = 0
    while total < budget:
        draw = int(rng.poisson(poisson_lambda))
        draw = min(draw, budget - total)
        lengths.append(draw)
        total += draw
    lengths = np.asarray(lengths, np.int64)
    # Source length = n - budget + (number of spans) must not exceed n.
    nonzero = int((lengths > 0).sum())
    inserts = np.flatnonzero(lengths == 0)
    lengths = np.delete(lengths, inserts[budget - nonzero :])
    lengths = rng.permutation(lengths)  # the cut draw is not always the last span
    # Uniform non-overlapping placement: the spans are m items shuffled among the n - budget
    # unmasked tokens; the j-th span item sits after (slot_j - j) unmasked tokens.
    m = len(lengths)
    slots = np.sort(rng.choice(n - budget + m, m, replace=False))
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    starts = slots - np.arange(m) + before
    return starts.astype(np.int64), lengths


def infill_noise(
    rng: np.random.Generator,
    tokens: Sequence[int],
    mask_id: int,
    vocab_size: int,
    *,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.5,
    random_ratio: float = 0.1,
    eos_id: int | None = None,
    random_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BART text infilling (SpeechT5 text pre-training): int [n] tokens -> (source, target).

    `infill_spans` picks spans covering ~mask_ratio of the tokens; each span is replaced by ONE
    token: `mask_id`, or with probability `random_ratio` a random token from `random_ids`
    (default: every id below `vocab_size` except `mask_id`). A final `eos_id` is never masked.
    source: int32 [<= n], the encoder input; target: int32 [n], the tokens unchanged (what the
    decoder reconstructs).
    """
    target = np.asarray(tokens, np.int32).reshape(-1)
    n = len(target) - int(eos_id is not None and len(target) > 0 and target[-1] == eos_id)
    starts, lengths = infill_spans(rng, n, mask_ratio=mask_ratio, poisson_lambda=poisson_lambda)
    if random_ids is None:
        random_ids = (
            np.delete(np.arange(vocab_size), mask_id)
            if mask_id < vocab_size
            else np.arange(vocab_size)
        )
    random_ids = np.asarray(random_ids, np.int32)
    fill = np.full(len(starts), mask_id, np.int32)
    use_random = rng.random(len(starts)) < random_ratio
    fill[use_random] = rng.choice(random_ids, int(use_random.sum()))
    pieces, cursor = [], 0
    for start, length, token in zip(starts, lengths, fill):
        pieces += [target[cursor:start], [token]]
        cursor = start + length
    pieces.append(target[cursor:])
    return np.concatenate(pieces).astype(np.int32), target.copy()
