"""The on-disk cache of generated data (the eSpeak corpus, its k-means labels): where it is,
and how a folder in it is made so that a half-written one is never used."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile


def cache_dir() -> pathlib.Path:
    """$UNISPEECH_JAX_CACHE, default ~/.cache/unispeech_jax."""
    default = pathlib.Path.home() / ".cache" / "unispeech_jax"
    return pathlib.Path(os.environ.get("UNISPEECH_JAX_CACHE", default))


def build_atomically(final: pathlib.Path, marker: str, build) -> pathlib.Path:
    """Makes the folder `final` with `build(tmp)` into a temporary sibling, renamed into place
    when complete; `final/marker` (written last by `build`) says a folder is complete.

    An incomplete `final` (a killed run's) is moved aside, never reused. Processes racing
    both build the same thing; the first rename wins and the loser deletes its copy.
    """
    if (final / marker).is_file():
        return final
    base = final.parent
    base.mkdir(parents=True, exist_ok=True)
    if final.exists():
        stale = pathlib.Path(tempfile.mkdtemp(prefix=f".stale-{final.name}-", dir=base))
        try:
            final.rename(stale / "old")
        except OSError:
            pass  # someone else moved or completed it meanwhile
        shutil.rmtree(stale, ignore_errors=True)
        if (final / marker).is_file():
            return final
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=base))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:  # lost a race: the winner's copy is complete and identical
            if not (final / marker).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
