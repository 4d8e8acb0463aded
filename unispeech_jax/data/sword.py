"""SWORD zText Bible modules read in pure Python, and two of them aligned verse by verse: real
parallel text for speech translation (the World English Bible and the Spanish Reina-Valera
1909 of the Debian packages `sword-text-web` and `sword-text-sparv`, both public domain).

    python -m unispeech_jax.data.sword --source engWEB2015eb --target spaRV1909eb \\
        --out bible.en-es.tsv [--library /usr/share/sword]

writes `source<TAB>target` lines (markup stripped), the input of the corpus's
`--translations` (data/corpus.py).

A module is `mods.d/<name>.conf` (key=value lines: `DataPath`, `ModDrv=zText`,
`CompressType=ZIP`, `SourceType`, ...) and, in its DataPath, for each testament (ot, nt):

    <t>.bzs   block index: per block three little-endian uint32: offset in <t>.bzz,
              compressed size, uncompressed size
    <t>.bzv   entry index: per entry uint32 block, uint32 offset in the uncompressed block,
              uint16 size (10 bytes; size 0 is an empty entry)
    <t>.bzz   the zlib-compressed blocks, each the UTF-8 texts of consecutive entries

Entries follow the module's versification: entry 0 is empty, entry 1 the testament heading,
then per book its heading and per chapter its heading and verses 1..n. The two Bibles use
different versifications (NRSVA, KJV), so verses are numbered from the module's own markup
rather than from versification tables: OSIS modules put `<chapter osisID="Gen.1" sID=..>` in
each chapter heading, the entries up to the next heading are its verses, and the one entry
before the heading of another book's chapter is that book's heading. An entry with several
chapter starts (text the versification has no place for, like the WEB's Greek Daniel) is
left out. Verse references where the versifications differ (e.g. one splits a verse the
other keeps whole) may pair neighbouring verses: few, and said here rather than hidden.
"""

from __future__ import annotations

import html
import re
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

from unispeech_jax import errors
from unispeech_jax.data.stats import DataError

TESTAMENTS = ("ot", "nt")
_BLOCK = struct.Struct("<III")  # offset, compressed size, uncompressed size
_ENTRY = struct.Struct("<IIH")  # block, offset in block, size
_CHAPTER_START = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"')
_CHAPTER_ID = re.compile(r"^(.+)\.(\d+)$")
# Markup whose content is not the verse: OSIS notes, speaker labels and titles other than
# canonical ones (a psalm's superscription is text), GBF footnotes (RF..Rf) and titles
# (TS..Ts). Every other tag is dropped and its content kept; tags inside a word's line
# (words, added words, quotes, names) leave nothing, the others a space.
_NOT_VERSE = re.compile(
    r"<(note|speaker)\b[^>]*(?<!/)>.*?</\1\s*>"
    r'|<title\b(?![^>]*\bcanonical="true")[^>]*(?<!/)>.*?</title\s*>'
    r"|<RF>.*?<Rf>|<TS>.*?<Ts>",
    re.DOTALL,
)
_INLINE_TAG = re.compile(r"</?(w|transChange|q|name|seg|hi|divineName|foreign|FI|Fi|FR|Fr)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
# The end of a book: what follows in its last verse's entry is back matter (a glossary).
_BOOK_END = re.compile(r'<div\b(?=[^>]*\btype="book")(?=[^>]*\beID=)[^>]*>.*', re.DOTALL)


def read_conf(path: Path) -> dict[str, str]:
    """The key=value entries of a module's .conf (continued lines and repeats: the first
    line of the first occurrence), with the module name under 'name'."""
    conf: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    continued = False
    for line in lines:
        line = line.strip()
        if continued or not line or line.startswith("#"):
            continued = continued and line.endswith("\\")
            continue
        continued = line.endswith("\\")
        if line.startswith("[") and line.endswith("]") and "name" not in conf:
            conf["name"] = line[1:-1]
        key, sep, value = line.partition("=")
        if sep and key.strip() not in conf:
            conf[key.strip()] = value.strip().rstrip("\\").strip()
    return conf


def module_dir(library: str | Path, name: str) -> Path:
    """The data folder of module `name` (case-insensitive) of a SWORD library (the folder
    with mods.d/, e.g. /usr/share/sword); DataError unless it is a readable zText module."""
    library = Path(library)
    confs = sorted((library / "mods.d").glob("*.conf"))
    for path in confs:
        conf = read_conf(path)
        if conf.get("name", "").lower() != name.lower():
            continue
        problems = {
            "ModDrv": ("ztext",),
            "CompressType": ("zip",),
            "SourceType": ("osis",),
            "Encoding": ("utf-8", "utf8"),
        }
        for key, allowed in problems.items():
            if conf.get(key, "").lower() not in allowed:
                raise DataError(
                    f"{path}: {key}={conf.get(key, '')!r}; this reader needs {allowed[0]}"
                )
        if conf.get("CipherKey"):
            raise DataError(f"{path}: the module is enciphered (CipherKey)")
        return library / conf.get("DataPath", "").lstrip("./").rstrip("/")
    known = ", ".join(read_conf(p).get("name", p.stem) for p in confs) or "none"
    raise DataError(f"no SWORD module {name!r} in {library / 'mods.d'} (modules: {known})")


def read_entries(path: str | Path, testament: str) -> list[str]:
    """The UTF-8 texts of every index entry of one testament ('' for empty entries; [] when
    the module has no such testament)."""
    path = Path(path)
    files = {ext: path / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz")}
    if not any(f.is_file() for f in files.values()):
        return []
    try:
        blocks_raw, index, data = (files[ext].read_bytes() for ext in ("bzs", "bzv", "bzz"))
    except OSError as e:
        raise DataError(f"{path}: cannot read the {testament} files ({e})") from None
    if len(blocks_raw) % _BLOCK.size or len(index) % _ENTRY.size:
        raise DataError(f"{path}: {testament}.bzs / .bzv sizes are not whole records")
    blocks = [_BLOCK.unpack_from(blocks_raw, k) for k in range(0, len(blocks_raw), _BLOCK.size)]
    cache: dict[int, bytes] = {}
    entries = []
    for k in range(0, len(index), _ENTRY.size):
        block, start, size = _ENTRY.unpack_from(index, k)
        if not size:
            entries.append("")
            continue
        if block not in cache:
            if block >= len(blocks):
                raise DataError(f"{path}: {testament}.bzv entry {k // 10} names missing block")
            offset, packed, unpacked = blocks[block]
            try:
                cache[block] = zlib.decompress(data[offset : offset + packed])
            except zlib.error as e:
                raise DataError(f"{path}: {testament}.bzz block {block}: {e}") from None
            if len(cache[block]) != unpacked:
                raise DataError(f"{path}: {testament}.bzz block {block} has the wrong size")
        entries.append(cache[block][start : start + size].decode("utf-8", "replace"))
    return entries


def verses(path: str | Path, counts: Counter | None = None) -> dict[tuple[str, int, int], str]:
    """{(book, chapter, verse): markup} of a zText module's data folder (both testaments),
    numbered from its chapter headings (module docstring). `counts` gets 'unplaced' for
    entries left out."""
    counts = Counter() if counts is None else counts
    out: dict[tuple[str, int, int], str] = {}
    for testament in TESTAMENTS:
        entries = read_entries(path, testament)
        heads = []  # (entry index, book, chapter) of every chapter heading
        for k, text in enumerate(entries):
            starts = _CHAPTER_START.findall(text)
            match = _CHAPTER_ID.match(starts[0]) if len(starts) == 1 else None
            if match:
                heads.append((k, match.group(1), int(match.group(2))))
            elif starts:
                counts["unplaced"] += 1
                entries[k] = ""
        for n, (k, book, chapter) in enumerate(heads):
            end = heads[n + 1][0] if n + 1 < len(heads) else len(entries)
            if n + 1 < len(heads) and heads[n + 1][1] != book:
                end -= 1  # the next book's heading
            for verse, text in enumerate(entries[k + 1 : end], 1):
                out[(book, chapter, verse)] = text
    if not out:
        raise DataError(f"{path}: no chapter headings found (an OSIS zText module has them)")
    return out


def plain_text(markup: str) -> str:
    """A verse's words: what follows its book's end, notes, labels and editors' titles
    dropped, other tags removed, entities decoded, white space made single spaces."""
    text = _NOT_VERSE.sub(" ", _BOOK_END.sub("", markup))
    text = _TAG.sub(" ", _INLINE_TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def parallel_verses(source: str | Path, target: str | Path) -> tuple[list, Counter]:
    """([(reference, source text, target text)] in the source's order, counts) of the verses
    two modules share, by reference. Counted: 'aligned', 'empty_source' / 'empty_target'
    (skipped: no words on that side), 'source_only' / 'target_only' (references one module
    lacks), 'unplaced' (module docstring)."""
    counts = Counter()
    src, tgt = verses(source, counts), verses(target, counts)
    pairs = []
    for ref, markup in src.items():
        if ref not in tgt:
            counts["source_only"] += 1
            continue
        a, b = plain_text(markup), plain_text(tgt[ref])
        if not a or not b:
            counts["empty_source" if not a else "empty_target"] += 1
            continue
        pairs.append((ref, a, b))
    counts["aligned"] = len(pairs)
    counts["target_only"] = len(tgt.keys() - src.keys())
    return pairs, counts


def main(argv=None) -> None:
    parser = errors.ArgumentParser(
        prog="python -m unispeech_jax.data.sword",
        description="Write the verses two SWORD zText Bibles share as 'source<TAB>target' "
        "lines (the corpus's --translations input).",
    )
    parser.add_argument("--source", required=True, help="module spoken, e.g. engWEB2015eb")
    parser.add_argument("--target", required=True, help="module of the labels, e.g. spaRV1909eb")
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--library", default="/usr/share/sword", help="folder with mods.d/")
    args = parser.parse_args(argv)
    try:
        pairs, counts = parallel_verses(
            module_dir(args.library, args.source), module_dir(args.library, args.target)
        )
    except DataError as e:
        parser.exit(2, f"error: {e}\n")
    if not pairs:
        parser.exit(2, f"error: {args.source} and {args.target} share no verse ({dict(counts)})\n")
    lines = "".join(f"{a}\t{b}\n" for _, a, b in pairs)
    Path(args.out).write_text(lines, encoding="utf-8")
    print(f"wrote {args.out}: {dict(sorted(counts.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
