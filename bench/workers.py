"""Each measurement of the benchmarks runs in a fresh process: JAX's and torch's thread pools
never share one, and one side's memory and caches do not colour the other's figures.

A script calls `run(__file__, spec)`; the child is the same script started with
`--worker '<spec as JSON>'`, which ends by `report(result)`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_RESULT = "RESULT "


def report(result: dict) -> None:
    """Hands `result` (JSON-serialisable) back to the parent."""
    print(_RESULT + json.dumps(result), flush=True)


def pages_env(huge: bool) -> dict:
    """GLIBC_TUNABLES for our side's worker: malloc advising transparent huge pages (`huge`, what
    the training CLI runs with, see unispeech_jax/hostmem.py) or 4 KiB pages; the caller's
    other tunables are kept."""
    from unispeech_jax import hostmem

    return {"GLIBC_TUNABLES": hostmem.with_huge_pages(os.environ.get("GLIBC_TUNABLES", ""), huge)}


def run(script: str, spec: dict, env: dict | None = None) -> dict:
    """Runs `script --worker spec` with the repository on the path and `env` added to this
    process's environment → its reported result (raises with the tail of its stderr if it
    reported none)."""
    env = dict(
        os.environ,
        **(env or {}),
        PYTHONPATH=os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    raise RuntimeError(f"worker {spec} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def parse_overrides(items) -> dict:
    """['key=value', ...] (value parsed as JSON, else kept as a string) → {key: value}."""
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
