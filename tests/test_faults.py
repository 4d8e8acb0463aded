"""Faults injected into training runs, and what must happen (README, "Faults").

Subprocess runs of tests/micro.py: kill -9 at whatever step the run has reached, a planted
half-written checkpoint, SIGTERM, command-line mistakes. In-process: NaN injected into the
loss (stop, or skip), and a checkpoint restored into a model of another shape.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import micro
import numpy as np
import pytest

from unispeech_jax import checkpoint, train
from unispeech_jax.models import unispeech

TIMEOUT = 600  # seconds for one subprocess event; generous, the CI host is shared


def complete_checkpoints(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


class Run:
    """One train subprocess on `workdir`, its output in `log` (appended over restarts)."""

    def __init__(self, workdir, env, *args):
        self.workdir, self.log = workdir, workdir.parent / f"{workdir.name}.log"
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                micro.train_command(workdir, *micro.REFERENCE_ARGS, *args),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()[self.offset :]

    def wait_until(self, done):
        """Polls `done()` until it is truthy (returned), failing if the run exits first."""
        deadline = time.monotonic() + TIMEOUT
        while not (result := done()):
            assert self.proc.poll() is None, f"exited early:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output()[-4000:]}"
            time.sleep(0.05)
        return result

    def start_step(self) -> int:
        """Blocks until the loop starts (metrics.jsonl is trimmed by then); its first step - 1."""
        found = self.wait_until(lambda: re.search(r"training steps (\d+)\.\.", self.output()))
        return int(found.group(1)) - 1

    def wait_for_step(self, step: int) -> int:
        """Blocks until the run has logged `step` or later; returns the step it logged."""
        return self.wait_until(
            lambda: (seen := micro.last_logged_step(self.workdir)) >= step and seen
        )

    def finish(self) -> int:
        return self.proc.wait(timeout=TIMEOUT)


def test_kill9_sigint_and_partial_checkpoint_resume_bit_exact(
    reference_run, compile_cache, tmp_path
):
    """kill -9 twice at arbitrary steps, a half-written checkpoint planted in between, then
    SIGINT (Ctrl-C; tests/test_launch.py sends SIGTERM): the pieced-together run logs every
    step once, with the uninterrupted run's losses bit for bit."""
    env = micro.subprocess_env(compile_cache, xla_default=True)  # as users run it
    work = tmp_path / "w"

    run = Run(work, env)
    assert run.start_step() == 0
    run.wait_for_step(3)
    run.wait_until(lambda: complete_checkpoints(work))
    run.proc.kill()  # SIGKILL: no handler, possibly mid-step, mid-save or mid-log-line
    run.finish()
    good = complete_checkpoints(work)[-1]
    # What a save killed before its rename leaves: a later step, incomplete. Never restored.
    partial = work / "checkpoints" / f"{good + 40}.orbax-checkpoint-tmp-1"
    shutil.copytree(work / "checkpoints" / str(good), partial)
    (partial / "state" / "manifest.ocdbt").write_bytes(b"")

    run = Run(work, env)
    assert run.start_step() == good
    run.wait_for_step(good + 3)
    run.proc.kill()
    run.finish()

    run = Run(work, env)
    stopped_after = run.wait_for_step(run.start_step() + 1)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.output()[-4000:]
    saved = complete_checkpoints(work)[-1]
    assert saved >= stopped_after and f"SIGINT: saved step {saved}, exiting" in run.output()
    assert micro.last_logged_step(work) == saved < 16  # the step in flight was finished, not lost

    run = Run(work, env)
    assert run.start_step() == saved
    assert run.finish() == 0, run.output()[-4000:]
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, 17))  # no repeats
    assert micro.train_losses(work) == reference_run


def poison_step(monkeypatch, bad_step: int):
    """Makes the loss (and so every gradient) NaN at optimizer step `bad_step` (0-based)."""
    clean = unispeech.loss_fn

    def poisoned(module, params, batch, rng, step, train, model_state):
        loss, aux = clean(module, params, batch, rng, step, train, model_state)
        return loss * jnp.where(step == bad_step, jnp.nan, 1.0), aux

    monkeypatch.setattr(unispeech, "loss_fn", poisoned)


def test_nan_stops_before_saving_then_wrong_shape_restore(tiny_corpus_env, tmp_path, monkeypatch):
    """NaN at step 5, logged only every 100 steps: the check before the save at step 6 stops
    the run; checkpoint 4 stays the newest, finite. Then a model of another width refuses that
    checkpoint with one CheckpointError, and the workdir's config.json is left alone."""
    poison_step(monkeypatch, 4)
    work = tmp_path / "w"
    config = micro.micro_config(total_steps=8, log_every=100)
    with pytest.raises(FloatingPointError, match=r"non-finite .* last good checkpoint is step 4"):
        train.train(config, work)
    assert complete_checkpoints(work) == [2, 4]
    params = micro.restore_variables(work)[0]
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))

    saved_config = (work / "config.json").read_text()
    with pytest.raises(checkpoint.CheckpointError, match="does not fit this model"):
        train.train(micro.micro_config(**{"model.hidden_size": 48}), work)
    assert (work / "config.json").read_text() == saved_config


def test_nan_skip_mode_counts_and_continues(tiny_corpus_env, tmp_path, monkeypatch):
    poison_step(monkeypatch, 4)
    work = tmp_path / "w"
    result = train.train(micro.micro_config(total_steps=8, skip_nonfinite=True), work, stop_at=6)
    assert result["step"] == 6 and result["train"]["nonfinite_steps"] == 1
    losses = micro.train_losses(work)
    assert np.isnan(losses[5]) and np.isfinite(losses[6])
    params = micro.restore_variables(work)[0]
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def unwritable_dir(tmp_path):
    """A directory this process cannot write into (root writes anywhere but in /sys)."""
    if os.geteuid() != 0:
        path = tmp_path / "read_only"
        path.mkdir()
        path.chmod(0o555)
        return path
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        return pathlib.Path("/sys")
    pytest.skip("running as root with a writable /sys: no directory root cannot write")


@pytest.mark.parametrize(
    "program, workdir, args, message",
    [
        ("train", "w", ["--config.model.hiden_size=3"], "ConfigError: .*'model.hiden_size'.*did you mean 'hidden_size'"),
        ("train", "w", ["--config.model.num_layers=four"], "ConfigError: .*'model.num_layers' is of type int; got 'four'"),
        ("train", "w", ["--config.mesh.shape.data=3"], "ConfigError: .*needs 3 devices, but 1 are available"),
        ("train", "w", ["--config.total_steps=True"], "ConfigError: .*'total_steps' is of type int; got True"),
        ("train", "w", ["--config.model.conv_dim=(1,2)"], r"ConfigError: model.conv_dim, conv_kernel and conv_stride need one entry per conv layer each"),
        ("train", "w", ["--workdr=x"], "FlagsError: Unknown command line flag 'workdr'. Did you mean: workdir"),
        ("train", "file", [], r"ConfigError: workdir \S+ is a file, not a directory"),
        ("train", "unwritable", [], r"ConfigError: workdir \S+ cannot be written: Permission denied"),
        ("evaluate", "file", [], r"ConfigError: workdir \S+ is a file, not a directory"),
        ("evaluate", "w", ["--stpe=3"], "FlagsError: Unknown command line flag 'stpe'"),
    ],
)  # fmt: skip
def test_command_line_mistakes_are_one_line(
    program, workdir, args, message, compile_cache, tmp_path
):
    """Exit status 2 and one line, before anything is compiled: config overrides, flags, and
    workdirs that are files or cannot be written."""
    work = {"w": tmp_path / "w", "file": tmp_path / "file", "unwritable": None}[workdir]
    if workdir == "file":
        work.write_text("")
    work = work or unwritable_dir(tmp_path)
    command = (
        micro.train_command(work, *args)
        if program == "train"
        else [sys.executable, "-m", "unispeech_jax.evaluate", "--workdir", str(work), *args]
    )
    out = subprocess.run(
        command,
        env=micro.subprocess_env(compile_cache),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    micro.assert_one_error_line(out, message)
