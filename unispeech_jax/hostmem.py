"""Host memory: transparent huge pages for the buffers XLA allocates at every step.

XLA:CPU mallocs a step's temporaries afresh at each execution (1.5 GB at base). glibc serves
blocks that large with a new mmap and unmaps them on free, so every step page-faults its whole
working set again, 4 KiB at a time: 428 k minor faults per base CTC step, 10–20 % of the step
on the 2-core machine (docs/results/step_vs_hf.md, "Huge pages"). glibc ≥ 2.35's tunable
`glibc.malloc.hugetlb=1` makes malloc advise its mappings for transparent huge pages (THP):
~2 k faults per step. Tunables are read once, when the process starts, so the command-line
entry points re-execute themselves with it set (`reexec_with_huge_pages`). Setting
`GLIBC_TUNABLES` yourself, e.g. `glibc.malloc.hugetlb=0`, opts out: the tunable is then never
touched. Accelerator hosts gain little (their step buffers live on the device). Runs of a few
steps, mostly compilation, do not gain either: the test suite's train subprocesses were
10-20 % slower with huge pages and opt out (tests/micro.py).
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
_REEXECUTED = "UNISPEECH_JAX_HUGE_PAGES_REEXEC"


def thp_mode(path: str = _THP_MODE_FILE) -> str | None:
    """The kernel's THP mode ('always', 'madvise', 'never'), None where there is no THP."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def huge_pages_env(environ: dict, libc: tuple[str, str], mode: str | None) -> dict | None:
    """The environment to re-execute with, or None when there is nothing to gain or the user
    decided: libc not glibc ≥ 2.35 (libc as `platform.libc_ver()`), THP absent or 'never',
    GLIBC_TUNABLES already naming the tunable, or this process already re-executed."""
    name, version = libc
    if name != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
        return None
    if mode not in ("always", "madvise") or _REEXECUTED in environ:
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in tunables:
        return None
    return dict(environ, GLIBC_TUNABLES=with_huge_pages(tunables, True), **{_REEXECUTED: "1"})


def with_huge_pages(tunables: str, huge: bool) -> str:
    """A GLIBC_TUNABLES value: `tunables` (':'-separated) with the huge-pages tunable set to
    1 or 0 in place of any setting it had; the other tunables are kept."""
    others = [t for t in tunables.split(":") if t and not t.startswith(TUNABLE)]
    return ":".join(others + [f"{TUNABLE}={int(huge)}"])


def reexec_with_huge_pages() -> None:
    """Replaces this process by itself, same command line, with `glibc.malloc.hugetlb=1` set,
    when `huge_pages_env` says so; else returns. Call it first in a `__main__` block, before
    any work (the process image, not only Python state, is replaced; the PID stays)."""
    env = huge_pages_env(dict(os.environ), platform.libc_ver(), thp_mode())
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)


def status() -> str:
    """One line for the training log: whether this process's mallocs get huge pages, and why."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if f"{TUNABLE}=1" in tunables:
        return f"host memory: malloc advises transparent huge pages (GLIBC_TUNABLES={tunables})"
    mode = thp_mode()
    if mode == "always":
        return (
            "host memory: transparent huge pages for every large mapping (kernel THP mode always)"
        )
    return (
        f"host memory: 4 KiB pages for malloc (THP mode {mode}, "
        f"libc {' '.join(platform.libc_ver()) or 'unknown'}, GLIBC_TUNABLES={tunables or 'unset'})"
    )
