"""The micro UniSpeech config of the training tests: configs/tiny.py shrunk so that a step
takes well under a second on one CPU core. Also a config file for subprocess runs:

    python -m unispeech_jax.train --config tests/micro.py --workdir W [--config.x=y ...]
"""

import json
import os
import pathlib
import re
import sys

import jax
import numpy as np

from unispeech_jax import checkpoint
from unispeech_jax import config as config_lib
from unispeech_jax.experiments import micro_models

REPO = pathlib.Path(__file__).resolve().parents[1]

MICRO = [
    "total_steps=6",
    "log_every=1",
    "eval_every=6",
    "checkpoint_every=2",
    "eval_max_batches=2",
    "data.corpus.hours=0.02",
    "data.max_sample_len=32000",
    "data.bucket_boundaries=(16000,32000)",
    "data.max_samples_per_batch=64000",
    "data.batch_multiple=2",
    *micro_models.UNISPEECH,
    "optim.warmup_steps=2",
    "peak_flops_per_device=1e10",
]
# The runs of the fault and multi-process tests: long enough to be interrupted twice.
REFERENCE_ARGS = (
    "--config.total_steps=16",
    "--config.eval_every=16",
    "--config.checkpoint_every=2",
)


def micro_config(**overrides):
    """The micro config with `key=value` overrides (dotted keys via `**{'a.b': v}`)."""
    c = config_lib.load_file(REPO / "configs" / "tiny.py")
    config_lib.apply_overrides(c, MICRO + [f"{k}={v!r}" for k, v in overrides.items()])
    return c


def get_config():
    return micro_config()


def train_losses(workdir) -> dict[int, float]:
    """{step: loss} of the train records in a workdir's metrics.jsonl."""
    text = (pathlib.Path(workdir) / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def last_logged_step(workdir) -> int:
    """The step of the last complete train record in metrics.jsonl (0 if none yet)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []  # [-1]: cut, or ''
    steps = [json.loads(line)["step"] for line in lines if '"split": "train"' in line]
    return steps[-1] if steps else 0


def restore_variables(workdir, step=None):
    """(params, model_state) of a workdir's newest (or given) checkpoint, the manager closed."""
    with checkpoint.Checkpoints(workdir, create=False) as ckpt:
        return ckpt.restore_variables(step)


# Parameters after the same updates computed two ways (sharded, accumulated) may differ by
# rounding only: at most this fraction of the change the updates made (`params_errors`).
# Adam divides each gradient element by its own size (+ eps), so elements whose gradient is
# near eps turn rounding into visible update differences: measured worst 4.4e-3 (SpeechT5's
# first conv kernel, sharded, two steps) and 1.0e-2 (a conv kernel, two accumulated
# micro-batches). A wrong update (a gradient not reduced over devices or micro-batches, a
# shard updated twice or not at all) is off by the size of the update itself.
PARAMS_RTOL = 0.02


def params_errors(params, reference, start) -> dict[str, float]:
    """The largest deviation of each parameter array from the reference run's, relative to
    the largest change the reference's updates made to it (1.0 = as far off as the updates
    moved it), for the worst five arrays.

    An array the updates barely moved is measured against a tenth of the largest change in
    the model instead: the attention key bias, whose true gradient is zero (softmax ignores a
    constant per query), gets rounding noise as gradient, which Adam scales up to noise-sized
    updates that differ between any two reduction orders.
    """
    params, reference, start = jax.device_get((params, reference, start))
    moved = jax.tree.map(lambda r, s: np.abs(r - s).max(), reference, start)
    floor = 0.1 * max(jax.tree.leaves(moved))
    errors = jax.tree.map(
        lambda p, r, m: float(np.abs(p - r).max() / max(m, floor)), params, reference, moved
    )
    named = dict(zip(checkpoint.array_names(errors), jax.tree.leaves(errors)))
    return dict(sorted(named.items(), key=lambda kv: -kv[1])[:5])


def subprocess_env(compile_cache, xla_default: bool = False) -> dict[str, str]:
    """Environment for train subprocesses: this checkout and Python first, CPU only, a
    persistent compilation cache so that restarts of the same config compile nothing, and
    4 KiB pages (unispeech_jax/hostmem.py's opt-out): these runs are a few micro steps,
    mostly compilation, which huge pages do not speed up; with them test_faults +
    test_launch took 177-179 s against 145-164 s. tests/test_hostmem.py tests the
    re-execution itself.

    xla_default: XLA's default optimisation level instead of the suite's level 0 (see
    conftest.py), for the runs that check resume bit for bit as users run it: the kill -9
    test and its reference run."""
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if xla_default:
        test_flags = r"--xla_(backend_optimization_level|cpu_use_fusion_emitters)=\S+"
        xla_flags = re.sub(test_flags, "", xla_flags).strip()
    return dict(
        os.environ,
        XLA_FLAGS=xla_flags,
        GLIBC_TUNABLES="glibc.malloc.hugetlb=0",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(compile_cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )


def train_args(workdir, *args) -> list[str]:
    """Arguments of `python -m unispeech_jax.train` for this config, plus flags / overrides."""
    return ["--config", str(pathlib.Path(__file__)), "--workdir", str(workdir), *args]


def train_command(workdir, *args) -> list[str]:
    return [sys.executable, "-m", "unispeech_jax.train", *train_args(workdir, *args)]


def assert_one_error_line(out, pattern: str):
    """A CLI run that stopped on a user mistake: exit status 2 and one error line matching
    `pattern`; no traceback, no storage dump, no checkpoint threads failing at exit
    ("Event loop is closed")."""
    assert out.returncode == 2, out.stderr[-4000:]
    errors = [
        line for line in out.stderr.splitlines() if re.match(r"\S+ \S+ ERROR |FlagsError: ", line)
    ]
    assert len(errors) == 1 and re.search(pattern, errors[0]), out.stderr[-4000:]
    for junk in ("Traceback", "Event loop is closed", "tensorstore_spec", "absl"):
        assert junk not in out.stderr.replace("absl::InitializeLog", ""), out.stderr[-4000:]
