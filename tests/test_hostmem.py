"""Huge pages for host buffers: when the CLIs re-execute themselves, and that it pays."""

import json
import os
import platform
import subprocess
import sys

import pytest

from unispeech_jax import hostmem

GLIBC = ("glibc", "2.36")


def test_env_sets_the_tunable_and_keeps_the_users_others():
    env = hostmem.huge_pages_env({"PATH": "/bin"}, GLIBC, "madvise")
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and env["PATH"] == "/bin"
    env = hostmem.huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "always")
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize(
    "environ, libc, mode",
    [
        ({}, ("", ""), "madvise"),  # not glibc (musl reports no version)
        ({}, ("glibc", "2.31"), "madvise"),  # before the tunable existed
        ({}, GLIBC, "never"),
        ({}, GLIBC, None),  # no THP in this kernel
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise"),  # the user opted out
        ({"UNISPEECH_JAX_HUGE_PAGES_REEXEC": "1"}, GLIBC, "madvise"),  # already re-executed
    ],
)
def test_env_leaves_the_process_alone(environ, libc, mode):
    assert hostmem.huge_pages_env(environ, libc, mode) is None


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert hostmem.thp_mode(str(path)) == "madvise"
    assert hostmem.thp_mode(str(tmp_path / "absent")) is None


# Re-executes itself, then mallocs, fills and frees 256 MiB a few times, counting the page faults
# of the last round: what XLA's per-step temporaries go through (numpy is no probe: it advises
# huge pages for its own large arrays).
_PROBE = """
import ctypes, json, os, resource, sys
from unispeech_jax import hostmem
hostmem.reexec_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 2**20
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    libc.free(block)
print(json.dumps({'tunables': os.environ.get('GLIBC_TUNABLES'), 'argv': sys.argv[1:], 'faults': faults}))
"""


def _probe(extra_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hostmem._REEXECUTED)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "an-argument"],
        env=dict(env, **extra_env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(
    hostmem.huge_pages_env({}, platform.libc_ver(), hostmem.thp_mode()) is None,
    reason="no glibc >= 2.35 with transparent huge pages here",
)
def test_reexec_cuts_page_faults_and_respects_an_opt_out():
    small_pages = 256 * 2**20 // 4096
    huge = _probe({})
    assert huge["tunables"] == "glibc.malloc.hugetlb=1" and huge["argv"] == ["an-argument"]
    opted_out = _probe({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert opted_out["tunables"] == "glibc.malloc.hugetlb=0"
    assert opted_out["faults"] > 0.9 * small_pages
    # Half, not ~1 %: the kernel may be short of free 2 MiB blocks for part of the block.
    assert huge["faults"] < 0.5 * small_pages, huge


def test_with_huge_pages_replaces_only_its_own_setting():
    assert hostmem.with_huge_pages("", True) == "glibc.malloc.hugetlb=1"
    assert hostmem.with_huge_pages("glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2", False) == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"
    )
