"""Checkpoints: orbax, asynchronous, keep-N, verified, resumed automatically from the workdir.

A checkpoint holds three items: `state` (step, params, optimizer state — saved and restored
sharded), `data` (the input pipeline's position and skip counters, JSON) and `checksums`
(JSON: a hash of every state array and one of `data`). The training RNG is derived from the
seed and the step, so the step is all the RNG state there is. Orbax writes each step into a
temporary folder and renames it when complete, so a process killed mid-save leaves no
checkpoint that a restart could pick up.

Orbax checks the structure of what it reads but not its bytes: a flipped bit inside a
compressed array file can restore as silently wrong numbers. So the hashes are computed on
device at save (one small jitted reduction per array, a few hundred bytes to the host) and
compared at restore; a checkpoint that cannot be read or whose hashes differ is *damaged*.
`restore_newest` then falls back to the newest one that restores cleanly, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pathlib
import socket
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from unispeech_jax.models.transformer import relayout_layers

log = logging.getLogger("unispeech_jax")
_ITEMS = {"state": "the arrays", "data": "the data position", "checksums": "the checksums"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into this run; the message says why."""


class DamagedCheckpoint(CheckpointError):
    """One step's files cannot be read or no longer hold what was saved."""

    def __init__(self, directory: pathlib.Path, step: int, what: str):
        super().__init__(f"checkpoint step {step} in {directory} is damaged: {what}")
        self.step = step


@contextlib.contextmanager
def workdir_lock(workdir: pathlib.Path):
    """Holds `workdir`/.lock while a run trains there. Two runs in one workdir (the same
    command started twice, a rerun while a stopped run is still writing its last checkpoint)
    would save into each other's checkpoints and resume from them; the second one fails at
    once instead, naming the holder. The lock is the kernel's (flock): a killed run leaves
    none behind. Process 0 takes it for the run (hosts sharing a filesystem would otherwise
    lock each other out)."""
    if jax.process_index() != 0:
        yield
        return
    fd = os.open(pathlib.Path(workdir) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise CheckpointError(
                f"workdir {workdir} is in use by another run ({holder}): wait for it to end, "
                "or give this run its own --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def array_names(tree) -> list[str]:
    """'a/b/0/c' names of a tree's leaves, the same for a saved tree (dicts, tuples,
    NamedTuples) and for what orbax gives back without a target (dicts, lists)."""
    return ["/".join(map(_key_name, path)) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _named(tree) -> dict[str, Any]:
    return dict(zip(array_names(tree), jax.tree.leaves(tree)))


def _nested(named: dict[str, Any]) -> dict:
    """{'a/b': x} → {'a': {'b': x}}."""
    out: dict = {}
    for name, x in named.items():
        *path, last = name.split("/")
        node = out
        for key in path:
            node = node.setdefault(key, {})
        node[last] = x
    return out


def _relaid_out(tree, like) -> dict[str, Any]:
    """{name: leaf} of `tree` with each layer stack in the layout (scanned or per layer) that
    `like` has there; containers of any kind, matched by name."""
    return _named(relayout_layers(_nested(_named(tree)), _nested(dict.fromkeys(array_names(like)))))


def in_layout(tree, like):
    """`tree` (e.g. restored without a target) in the structure of `like` (arrays or shapes),
    its layer stacks scanned or per layer as `like` has them: a run saved before
    `model.scan_layers` existed, or with the other setting, loads into this model.
    CheckpointError naming arrays `like` has and `tree` lacks."""
    named = _relaid_out(tree, like)
    missing = [n for n in array_names(like) if n not in named]
    if missing:
        raise CheckpointError(
            f"the checkpoint lacks {len(missing)} arrays of this model (another model or "
            f"config?), e.g. {', '.join(missing[:3])}"
        )
    return jax.tree.unflatten(jax.tree.structure(like), [named[n] for n in array_names(like)])


def _array_hash(x: jax.Array) -> jax.Array:
    """uint32 hash of the bits of `x` [any shape] and of where each element sits.

    Each element's bits, mixed with its flat position, go through murmur3's finaliser (a
    bijection), and the results are summed mod 2^32: any change of one element changes the
    sum, any other change escapes with odds of 2^-32. Elementwise work and one sum keep the
    array's sharding (no gather), and integer sums do not depend on the order of reduction,
    so every mesh gives the same hash.
    """
    if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
    else:
        unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
        bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)  # 8 bytes: [..., 2]
    position = jnp.zeros(bits.shape, jnp.uint32)
    for axis, size in enumerate(bits.shape):
        position = position * jnp.uint32(size) + jax.lax.broadcasted_iota(
            jnp.uint32, bits.shape, axis
        )
    h = bits ^ (position * jnp.uint32(0x9E3779B9))
    h ^= h >> 16
    h *= jnp.uint32(0x85EBCA6B)
    h ^= h >> 13
    h *= jnp.uint32(0xC2B2AE35)
    h ^= h >> 16
    return jnp.sum(h, dtype=jnp.uint32)


@jax.jit
def _array_hashes(tree) -> jax.Array:
    """[number of leaves] uint32: `_array_hash` of every leaf, in `array_names` order."""
    return jnp.stack([_array_hash(x) for x in jax.tree.leaves(tree)])


def array_checksums(tree) -> dict[str, int]:
    """{array name: hash} of a tree of (possibly sharded) arrays; one transfer to the host."""
    return dict(zip(array_names(tree), map(int, jax.device_get(_array_hashes(tree)))))


def _data_checksum(data_state: dict) -> int:
    return zlib.crc32(json.dumps(data_state, sort_keys=True).encode())


def _reason(e: BaseException) -> str:
    """The innermost cause of a storage error as one short line, without the storage spec
    that tensorstore appends."""
    while (inner := e.__cause__ or (None if e.__suppress_context__ else e.__context__)) is not None:
        e = inner
    text = str(e).split(" [tensorstore_spec=")[0].split("\n")[0].strip()
    text = text if len(text) <= 300 else text[:300] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _SettlingLoops(asyncio.DefaultEventLoopPolicy):
    """Event loops that, when closed, first run every task still pending to its end.

    Orbax runs a restore's reads as tasks gathered on a fresh event loop and closes that loop
    as soon as the gather raises, i.e. at the first damaged array, while the reads of the
    other arrays are still in flight in tensorstore's threads. Those tasks never run again:
    their late results find the loop closed ("Event loop is closed"), and when collected (at
    a random moment, usually exit) each failed one logs its own error with tensorstore's
    whole storage spec. Letting them finish first retrieves every result and exception while
    the loop still runs; it costs at most the rest of one restore's reads.
    """

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        close = loop.close

        def settle_then_close():
            while pending := asyncio.all_tasks(loop):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            close()

        loop.close = settle_then_close
        return loop


@contextlib.contextmanager
def reads_settled():
    """Within it, an orbax call that fails returns only after all its reads have ended."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_SettlingLoops())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def _all_processes(ok: bool) -> bool:
    """True when `ok` on every process: a file damaged on one host's reads must make every
    host skip that step, or they would continue into different collectives."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def variables(state: dict, like: dict | None = None) -> tuple[Any, dict]:
    """(params, model_state) of a restored training state; with `like` (a model's variables
    or their shapes: {'params': ..., other collections}) in its layer layout (`in_layout`)."""
    params, model_state = state["params"], dict(state.get("model_state") or {})
    if like is None:
        return params, model_state
    like_state = {k: v for k, v in like.items() if k != "params"}
    return in_layout(params, like["params"]), in_layout(model_state, like_state)


class Checkpoints:
    """`ocp.CheckpointManager` with the three items of a training run. Close it (or use it as
    a context manager): an open manager's threads outlive the run and fail at exit."""

    def __init__(
        self,
        workdir: str | pathlib.Path,
        keep: int = 3,
        async_save: bool = True,
        create: bool = True,
    ):
        """create=False (a reader: evaluation, init_from): CheckpointError if `workdir` has
        no checkpoints folder, rather than making one."""
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        if not create and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint in {self.directory}")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=create, enable_async_checkpointing=async_save
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "checksums": ocp.JsonCheckpointHandler(),
            },
        )
        # The newest step known to hold what was saved: restored and verified, or saved by
        # this process (its hashes were computed from the arrays it wrote).
        self.verified_step: int | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict) -> bool:
        """Starts an (async) save of `step` (no save interval: every call saves)."""
        checksums = {"arrays": array_checksums(state), "data": _data_checksum(data_state)}
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                checksums=ocp.args.JsonSave(checksums),
            ),
        )
        self.verified_step = step
        return saved

    def _check_fits(self, step: int, target: Any) -> bool:
        """Whether the saved arrays are those of `target` in another layer layout (scanned
        or not); CheckpointError when they are not those of `target` in any layout (another
        model or vocabulary); DamagedCheckpoint when their description cannot be read."""
        try:
            with reads_settled():
                saved = self.manager.item_metadata(step)["state"]
            saved = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), saved)
        except Exception as e:  # whatever orbax raises on a file it cannot parse
            raise DamagedCheckpoint(
                self.directory, step, f"the arrays' metadata (state/) cannot be read ({_reason(e)})"
            ) from None
        relaid = set(array_names(saved)) != set(array_names(target))
        shapes = {
            n: (tuple(m.shape), np.dtype(m.dtype))
            for n, m in (_relaid_out(saved, target) if relaid else _named(saved)).items()
        }
        wanted = {
            n: (tuple(x.shape), np.dtype(x.dtype))
            for n, x in zip(array_names(target), jax.tree.leaves(target))
        }
        differ = [
            f"{n}: {shapes.get(n, 'absent')} saved, {wanted.get(n, 'absent')} here"
            for n in sorted(set(shapes) | set(wanted))
            if shapes.get(n) != wanted.get(n)
        ]
        if differ:
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} does not fit this model/config "
                f"(was it written with another model size or vocabulary?): {len(differ)} "
                f"arrays differ, e.g. {'; '.join(differ[:3])}"
            )
        return relaid

    def _read(self, step: int, item: str, args) -> Any:
        """One item of a step; DamagedCheckpoint (on every process) if any cannot read it."""
        error = None
        try:
            with reads_settled():
                value = self.manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except Exception as e:  # tensorstore, JSON and file errors alike mean damage here
            error = e
        if not _all_processes(error is None):
            what = _reason(error) if error is not None else "another process cannot read it"
            raise DamagedCheckpoint(
                self.directory, step, f"{_ITEMS[item]} ({item}/) cannot be read ({what})"
            )
        return value

    def _verify(self, step: int, state: Any, data_state: dict | None):
        """DamagedCheckpoint unless the restored values hash to what was saved."""
        if not (self.directory / str(step) / "checksums").is_dir():
            log.warning(
                "checkpoint step %d has no checksums (written before they existed): "
                "restored unverified",
                step,
            )
            return
        saved = self._read(step, "checksums", ocp.args.JsonRestore())
        got = array_checksums(state)
        wrong = [n for n, h in got.items() if saved["arrays"].get(n) != h]
        if wrong:
            raise DamagedCheckpoint(
                self.directory,
                step,
                f"{len(wrong)} of {len(got)} arrays differ from what was saved (checksum "
                f"mismatch): {', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''}",
            )
        if data_state is not None and _data_checksum(data_state) != saved["data"]:
            raise DamagedCheckpoint(
                self.directory, step, "the data position (data/) differs from what was saved"
            )
        self.verified_step = max(step, self.verified_step or step)

    def restore(self, step: int, abstract_state: Any = None) -> tuple[Any, dict]:
        """(state, data position) of `step`, verified. `abstract_state`: the shapes and
        shardings to restore into; None: the arrays as saved, on one device."""
        if step not in self.all_steps():
            raise CheckpointError(f"{self.directory} has no step {step}: {self.all_steps()}")
        target = relaid = None
        if abstract_state is not None:
            target = jax.tree.map(
                lambda x: ocp.utils.to_shape_dtype_struct(x) if hasattr(x, "shape") else x,
                abstract_state,
            )
            relaid = self._check_fits(step, target)
        # Another layout: read as saved (the checksums name the saved arrays), then move.
        args = ocp.args.StandardRestore(None if relaid else target)
        state = self._read(step, "state", args)
        data_state = dict(self._read(step, "data", ocp.args.JsonRestore()) or {})
        self._verify(step, state, data_state)
        if relaid:
            log.info("checkpoint step %d: layer stacks converted to this model's layout", step)
            state = jax.tree.map(
                lambda x, t: jax.device_put(x, t.sharding), in_layout(state, target), target
            )
        return state, data_state

    def restore_newest(
        self, abstract_state: Any = None, set_aside: bool = False
    ) -> tuple[int, Any, dict] | None:
        """(step, state, data position) of the newest checkpoint that restores cleanly (see
        `restore`), or None if there is no checkpoint at all.

        Each damaged one newer than that is named in one warning line; with `set_aside` (a
        run that will write those steps again) it is renamed to `<step>.damaged`, kept for
        inspection. CheckpointError when every checkpoint is damaged.
        """
        damaged: list[int] = []
        for step in reversed(self.all_steps()):
            try:
                state, data_state = self.restore(step, abstract_state)
            except DamagedCheckpoint as e:
                log.warning("%s", e)
                damaged.append(step)
                continue
            if damaged:
                if set_aside:
                    for bad in damaged:
                        self._set_aside(bad)
                log.warning(
                    "restored step %d, the newest checkpoint in %s that restores cleanly%s",
                    step,
                    self.directory,
                    "; the damaged ones are kept as <step>.damaged" if set_aside else "",
                )
            return step, state, data_state
        if damaged:
            raise CheckpointError(
                f"no checkpoint in {self.directory} restores cleanly (damaged steps: "
                f"{', '.join(map(str, damaged))}; see the warnings above)"
            )
        return None

    def _set_aside(self, step: int):
        """Renames a damaged step out of orbax's sight (it would collide with the step's next
        save, and count against `keep`); process 0 renames, every process re-reads."""
        if jax.process_index() == 0:
            target, n = self.directory / f"{step}.damaged", 1
            while target.exists():
                n += 1
                target = self.directory / f"{step}.damaged-{n}"
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("unispeech_jax checkpoint set aside")
        self.manager.reload()

    def restore_chosen(self, step: int | None = None, abstract_state: Any = None):
        """(step, state, data position) of `step`, or of the newest that restores cleanly;
        CheckpointError if there is none. `abstract_state`: as for `restore`."""
        if step is not None:
            return step, *self.restore(step, abstract_state)
        found = self.restore_newest(abstract_state)
        if found is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return found

    def restore_params(self, step: int | None = None) -> Any:
        """Only the parameters of a run (e.g. to fine-tune it); see `restore_variables`."""
        return self.restore_variables(step)[0]

    def restore_variables(self, step: int | None = None) -> tuple[Any, dict]:
        """(params, model_state) of a run, verified, as saved (not sharded); model_state
        holds the non-trainable variables of families that have them (SpeechT5
        'batch_stats'), else {}. `step` None: the newest that restores cleanly."""
        step, state, _ = self.restore_chosen(step)
        log.info("loaded parameters of %s at step %d", self.directory, step)
        return variables(state)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
