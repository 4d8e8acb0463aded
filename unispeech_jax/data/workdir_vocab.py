"""The vocabulary a workdir keeps: the label dictionary and SentencePiece model(s) that its
model's ids mean, copied into `<workdir>/vocab/` when training starts.

Every reader of a workdir (resuming, `evaluate`, a run initialised from it) reads labels
through these files, whatever corpus it is pointed at: labels are encoded by symbol, so a
corpus with the same symbols in another order is remapped, and a corpus with symbols the kept
vocabulary lacks is refused with a DataError naming them (never scored with shuffled ids).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from unispeech_jax.data import sources, tasks, tfds_source
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.stats import DataError

VOCAB_DIR = "vocab"
# The data key that names each kept file.
_KEYS = {"spm.model": "sp_model", "spm_tgt.model": "target_sp_model"}

log = logging.getLogger("unispeech_jax")


def used_files(config) -> dict[str, Path]:
    """{file name under <workdir>/vocab: the data config's own file} for the vocabularies a
    run config reads: the label dictionary (speech batches with labels), the SentencePiece
    model (SpeechT5: its text ids) and the translation one (task st)."""
    data_cfg, task = tasks.split_config(config)
    cfg = resolve(data_cfg)
    files = {}
    if cfg.labels and task is None:
        files[f"dict.{cfg.labels}.txt"] = sources.vocab_path(cfg)
    if config.model.name == "speecht5":
        files["spm.model"] = sources.sentencepiece_model(cfg)
    if task is not None and task.name == "st":
        files["spm_tgt.model"] = sources.target_sentencepiece_model(cfg)
    return files


def output_vocabulary(config) -> Path | None:
    """The vocabulary file of a `pin`ned run config whose ids index the model's output rows
    (its text embedding and CTC heads, the family's VOCAB_PARAMS): task st the target
    language's SentencePiece model, else SpeechT5's text model or the label dictionary; None
    for a run that reads none."""
    files = used_files(config)
    for name in ("spm_tgt.model", "spm.model"):
        if name in files:
            return files[name]
    return next(iter(files.values()), None)


def pin(config, workdir, keep: bool = True, init_from: str = ""):
    """A copy of `config` whose data block reads the vocabulary kept in `workdir`.

    Without one there (a new run; `keep` copies it there): the vocabulary of the `init_from`
    workdir when the corpus's symbols are among its own (so the pre-trained output ids keep
    their meaning), else the corpus's own. A run that is not training (`keep=False`) on a
    workdir that keeps none (made before this existed) reads the corpus's, with a warning.
    """
    pinned = config.copy_and_resolve_references()
    kept_dir = Path(workdir) / VOCAB_DIR
    if "labels" in pinned.data:
        kind = sources.label_kind(pinned.data, kept_dir)
        if kind != pinned.data.labels:
            log.info(
                "%s has no phone dictionary: reading letters (data.labels='%s')",
                pinned.data.tfds_name,
                kind,
            )
            pinned.data.labels = kind
    for name, corpus_file in used_files(pinned).items():
        kept = kept_dir / name
        if kept.is_file():
            refuse_missing(kept, corpus_file)
            chosen = kept
        else:
            chosen = _new_run_file(name, corpus_file, init_from)
            if keep and _letters_to_list(pinned, chosen):
                chosen = tfds_source.write_letter_vocab(resolve(pinned.data), kept)
                log.info("%s: the letters of %s's transcripts", chosen, pinned.data.tfds_name)
            elif keep:
                _copy_atomically(chosen, kept)
                chosen = kept
            else:
                log.warning("%s keeps no %s: reading %s", workdir, name, corpus_file)
        pinned.data[_KEYS.get(name, "vocab_path")] = str(chosen)
    return pinned


def _letters_to_list(config, chosen: Path) -> bool:
    """Whether a new run's letter dictionary is made from its TFDS transcripts: a TFDS
    source reading letters, with no dictionary of its own or of the `init_from` run."""
    return config.data.source == "tfds" and config.data.labels == "ltr" and not chosen.is_file()


def refuse_missing(kept: Path, corpus_file: Path) -> None:
    """DataError naming the symbols of `corpus_file` that `kept` has no id for; a missing
    `corpus_file` (a manifest folder without one) is fine: labels are encoded by symbol."""
    if not corpus_file.is_file():
        return
    missing = _missing(kept, corpus_file)
    if missing:
        raise DataError(
            f"{corpus_file} has {len(missing)} symbol{'s' * (len(missing) > 1)} the model's "
            f"vocabulary ({kept}) has no id for: "
            f"{' '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    if symbols(kept) != symbols(corpus_file):
        log.info(
            "%s lists its symbols in another order than %s: mapped by symbol", corpus_file, kept
        )


def symbols(path: Path) -> list[str]:
    """The symbols of a vocabulary file in id order: a fairseq dict's symbols (without the
    reserved ones), or a SentencePiece model's pieces."""
    try:
        if path.suffix == ".model":
            sp = text_lib.load_sp(path)
            return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        return text_lib.PhoneVocab.load(path).symbols[2:]
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"vocabulary {path} cannot be read: {e}") from None


def _missing(kept: Path, corpus_file: Path) -> list[str]:
    have = set(symbols(kept))
    return [s for s in symbols(corpus_file) if s not in have]


def _new_run_file(name: str, corpus_file: Path, init_from: str) -> Path:
    """The vocabulary a run that keeps none yet starts with (see `pin`)."""
    pretrained = Path(init_from) / VOCAB_DIR / name if init_from else None
    if pretrained is None or not pretrained.is_file():
        return corpus_file
    if not corpus_file.is_file():
        return pretrained
    missing = _missing(pretrained, corpus_file)
    if missing:
        log.info(
            "init_from: %s has symbols %s's vocabulary lacks (%s): this run's ids are its own",
            corpus_file,
            init_from,
            " ".join(missing[:20]),
        )
        return corpus_file
    return pretrained


def _copy_atomically(source: Path, target: Path) -> None:
    """Copies through a temporary file renamed into place: every process of a run may do it
    at once (the same bytes), and a reader never sees half a file."""
    if not source.is_file():
        raise DataError(f"vocabulary not found: {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
