"""Checkpoints: orbax, asynchronous, keep-N, resumed automatically from the workdir.

A checkpoint holds two items: `state` (step, params, optimizer state — saved and restored
sharded) and `data` (the input pipeline's position and skip counters, JSON). The training
RNG is derived from the seed and the step, so the step is all the RNG state there is.
Orbax writes each step into a temporary folder and renames it when complete, so a process
killed mid-save leaves no checkpoint that a restart could pick up.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into this run; the message says why."""


class Checkpoints:
    """Thin wrapper over `ocp.CheckpointManager` with the two items of a training run."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict) -> bool:
        """Starts an (async) save of `step` (no save interval: every call saves)."""
        return self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores `step` into the shapes and shardings of `abstract_state`."""
        target = jax.tree.map(
            lambda x: ocp.utils.to_shape_dtype_struct(x) if hasattr(x, "shape") else x,
            abstract_state,
        )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} does not fit this model/config "
                f"(was it written with another model size or vocabulary?): {e}"
            ) from None
        return restored["state"], dict(restored["data"] or {})

    def restore_params(self, step: int | None = None) -> Any:
        """Restores only the parameters (host numpy arrays) of a run, e.g. to fine-tune it."""
        return self.restore_variables(step)[0]

    def restore_variables(self, step: int | None = None) -> tuple[Any, dict]:
        """(params, model_state) of a run as host numpy arrays; model_state holds the
        non-trainable variables of families that have them (SpeechT5 'batch_stats'), else {}."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
        logging.info("loaded parameters of %s at step %d", self.directory, step)
        return restored["state"]["params"], dict(restored["state"].get("model_state") or {})

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
