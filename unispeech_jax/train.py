r"""Training: one loop for every model family and objective.

    python -m unispeech_jax.train --config configs/tiny.py --workdir runs/tiny \
        [--config.optim.lr=5e-4 ...]

Re-running the same command resumes from the newest complete checkpoint in `--workdir`
(step, parameters, optimizer state and the input pipeline's position). SIGTERM or SIGINT
(to any one process) finish the current step on every process, save, and exit 0. Multi-host: run the same command on every host
(see launch/); `jax.distributed.initialize` is called when the environment asks for it.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import contextlib
import logging
import os
import pathlib
import signal
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from absl import logging as absl_logging
from jax.experimental import multihost_utils

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import evaluate as evaluate_lib
from unispeech_jax import hostmem, models, perf, platforms, progress, sharding
from unispeech_jax.data import pipeline, workdir_vocab
from unispeech_jax.models.transformer import relayout_layers
from unispeech_jax.step import build

_CONFIG = flags.DEFINE_string(
    "config", None, "Config file (configs/*.py); override keys with --config.KEY=VALUE."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for multi-process runs."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process' index.")
_STOP_AT = flags.DEFINE_integer(
    "stop_at",
    None,
    "Save and stop at this step (a later run "
    "with the same workdir resumes); schedules still follow "
    "total_steps. For time-sliced jobs.",
)


# ----------------------------------------------------------------------------------------
# Distributed runtime
# ----------------------------------------------------------------------------------------


def distributed_args(coordinator=None, num_processes=None, process_id=None, environ=None):
    """The keyword arguments for `jax.distributed.initialize`, or None for a single process.

    Explicit flags win, then the `JAX_COORDINATOR_ADDRESS`/`JAX_NUM_PROCESSES`/
    `JAX_PROCESS_ID` variables (launch/local_multiprocess.sh). Otherwise JAX detects the
    cluster itself ({}): inside a SLURM job step of several tasks (not merely inside an
    allocation: a lone process there, e.g. the tests in an salloc shell, has no peers to
    wait for) and on TPU VMs.
    """
    environ = os.environ if environ is None else environ
    coordinator = coordinator or environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator:
        if num_processes is None and "JAX_NUM_PROCESSES" in environ:
            num_processes = int(environ["JAX_NUM_PROCESSES"])
        if process_id is None and "JAX_PROCESS_ID" in environ:
            process_id = int(environ["JAX_PROCESS_ID"])
        return dict(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    slurm_tasks = int(environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", "1")))
    if "SLURM_STEP_ID" in environ and slurm_tasks > 1:
        return {}
    if any(k in environ for k in ("TPU_WORKER_HOSTNAMES", "CLOUD_TPU_TASK_ID")):
        return {}
    return None


def maybe_initialize_distributed(coordinator=None, num_processes=None, process_id=None):
    """Starts JAX's multi-process runtime when flags or the environment ask for it."""
    kwargs = distributed_args(coordinator, num_processes, process_id)
    if kwargs is not None:
        jax.distributed.initialize(**kwargs)


def merge_pretrained(params, pretrained, log, aliases=(), fresh=()):
    """Copies every pre-trained leaf whose path and shape match into `params` (fine-tuning);
    logs what was loaded and what stays freshly initialised.

    aliases: (new_prefix, old_prefix) pairs: a leaf under `new_prefix` with no pre-trained
      twin of its own name is loaded from the same path under `old_prefix` when the shapes
      match (UniSpeech's CTC fine-tuning head `lm_head/` from the phonetic `ctc_proj/`).
    fresh: path prefixes never loaded (`pretrained_fresh`: output rows of other symbols).
    Layer stacks are matched whatever the two runs' `model.scan_layers`.
    """
    pretrained = relayout_layers(pretrained, params)
    flat_new = {"/".join(map(str, k)): v for k, v in _flatten(params)}
    flat_old = {"/".join(map(str, k)): v for k, v in _flatten(pretrained)}

    def source(key):
        if key.startswith(tuple(fresh)):
            return None
        candidates = [key] + [old + key[len(new) :] for new, old in aliases if key.startswith(new)]
        for c in candidates:
            if c in flat_old and flat_old[c].shape == flat_new[key].shape:
                return c
        return None

    sources = {k: source(k) for k in flat_new}
    loaded = {k: src for k, src in sources.items() if src is not None}
    fresh = sorted(k for k, src in sources.items() if src is None)
    renamed = {k: src for k, src in loaded.items() if k != src}
    log.info(
        "init_from: loaded %d of %d parameter arrays%s; fresh: %s",
        len(loaded),
        len(flat_new),
        f" (renamed: {renamed})" if renamed else "",
        fresh if fresh else "none",
    )
    if not loaded:
        raise checkpoint_lib.CheckpointError(
            "init_from: no parameter of the pre-trained run "
            "matches this model (different model.name or size?)"
        )

    def pick(path, new):
        key = "/".join(str(getattr(k, "key", k)) for k in path)
        return jnp.asarray(flat_old[loaded[key]], new.dtype) if key in loaded else new

    return jax.tree_util.tree_map_with_path(pick, params)


def pretrained_fresh(family, config, init_from: str, log) -> tuple[str, ...]:
    """The family's VOCAB_PARAMS (params with a row per output id) when the pinned run
    `config` and the `init_from` workdir's model give their output ids to different symbols
    (st's target language, a corpus with symbols the pre-trained run lacks) or when its
    vocabulary file is gone, whatever the sizes: those rows would mean other symbols, so they
    start fresh. () when they agree."""
    try:
        theirs = config_lib.load_saved(pathlib.Path(init_from))
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"init_from: {e}") from None
    files = [
        workdir_vocab.output_vocabulary(c)
        for c in (config, workdir_vocab.pin(theirs, init_from, keep=False))
    ]
    readable = None not in files and files[1].is_file()
    if files[0] == files[1] or (
        readable and workdir_vocab.symbols(files[0]) == workdir_vocab.symbols(files[1])
    ):
        return ()
    prefixes = tuple(getattr(family, "VOCAB_PARAMS", ()))
    log.info(
        "init_from: this run's output ids (%s) are not %s's (%s): %s start fresh",
        files[0],
        init_from,
        files[1],
        ", ".join(prefixes),
    )
    return prefixes


def _flatten(tree):
    return [
        (tuple(getattr(k, "key", k) for k in path), v)
        for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


# ----------------------------------------------------------------------------------------
# Stopping
# ----------------------------------------------------------------------------------------


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (save, then exit 0),
    while inside `with`; on leaving, the previous handlers are back, so a caller that goes on
    after `train` returns (an experiment driver evaluating) is stopped by the next signal
    instead of ignoring it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def agreed(self) -> bool:
        """Whether any process received a signal; every process must call this at each step.

        A cluster may signal only some hosts (or signal them a step apart): if those stopped
        alone, the others would wait forever in the next step's collectives. One tiny
        all-gather per step makes every process stop after the same step.
        """
        if jax.process_count() == 1:
            return self.received is not None
        votes = multihost_utils.process_allgather(np.int32(self.received is not None))
        return bool(np.any(votes))


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------


def train(config, workdir: str | pathlib.Path, stop_at: int | None = None) -> dict[str, Any]:
    """Trains until `config.total_steps` (or `stop_at`, saving there, so that a later call
    resumes: schedules still follow total_steps); returns the last train and eval metrics."""
    start_time = time.perf_counter()
    sizes = config_lib.validate(config, jax.device_count(), jax.process_count())
    workdir = config_lib.writable_workdir(workdir)
    # Closed however the run ends: an open manager's threads fail at interpreter exit.
    # The signal handlers outlast the checkpoint in flight: a second signal cannot cut it.
    with (
        checkpoint_lib.workdir_lock(workdir),
        StopSignal() as stop,
        checkpoint_lib.Checkpoints(workdir, keep=config.keep_checkpoints) as ckpt,
    ):
        result = _train(config, workdir, stop_at, ckpt, stop, sizes, start_time)
    # Only now, with the last checkpoint written: the line says it is there.
    minutes = (time.perf_counter() - start_time) / 60.0
    logging.getLogger("unispeech_jax").info(
        "%s",
        progress.closing_line(
            workdir,
            result,
            result.pop("start_step"),
            config.total_steps,
            config.data.eval_split,
            minutes,
        ),
    )
    return result


def _train(config, workdir, stop_at, ckpt, stop, sizes, start_time) -> dict[str, Any]:
    log = logging.getLogger("unispeech_jax")
    family = models.get(config.model.name)
    models.resolve_config(family, config)  # what the data decides, saved in config.json
    saved_config = config  # config.json: as given; the pinned vocabulary paths follow the workdir
    config = workdir_vocab.pin(config, workdir, init_from=config.init_from)

    # --- Model, optimizer, mesh, the sharded step (state materialised in its shardings) ----
    mesh = sharding.make_mesh(config.mesh)
    built = build(config, mesh)
    module, rules = built.module, built.rules
    log.info(
        "devices: %d (%s) in %d processes; mesh %s",
        jax.device_count(),
        jax.devices()[0].platform,
        jax.process_count(),
        sizes,
    )
    state = sharding.materialize(
        built.init_fn, jax.random.key(config.seed), built.state_shardings, rules
    )
    log.info("parameters: %.2fM", sharding.param_count(state["params"]) / 1e6)

    # --- Checkpoints: resume (from the newest that restores cleanly), or start from a
    # pre-trained run ---------------------------------------------------------------------
    resumed = ckpt.restore_newest(
        built.abstract_state,
        set_aside=True,  # this run will write those steps again
    )
    data_state: dict = {}
    if resumed is not None:
        latest, state, data_state = resumed
        log.info("resumed from %s at step %d", ckpt.directory, latest)
    elif config.init_from:
        try:
            with checkpoint_lib.Checkpoints(config.init_from, create=False) as source:
                steps = source.all_steps()
                if config.init_from_step >= 0 and config.init_from_step not in steps:
                    raise checkpoint_lib.CheckpointError(
                        f"init_from_step={config.init_from_step}: {source.directory} has "
                        f"steps {steps}"
                    )
                pretrained = source.restore_params(
                    None if config.init_from_step < 0 else int(config.init_from_step)
                )
        except checkpoint_lib.CheckpointError as e:
            raise checkpoint_lib.CheckpointError(f"init_from: {e}") from None
        state["params"] = jax.jit(lambda p: p, out_shardings=built.state_shardings["params"])(
            merge_pretrained(
                state["params"],
                pretrained,
                log,
                getattr(family, "PRETRAINED_ALIASES", ()),
                pretrained_fresh(family, config, config.init_from, log),
            )
        )
    start_step = int(state["step"])
    if jax.process_index() == 0:  # only now: a config that cannot resume must not replace it
        (workdir / "config.json").write_text(config_lib.to_json(saved_config))

    train_step = built.train_step

    # Measured before the input threads start, so they do not lower the ceiling.
    peak = config.peak_flops_per_device or perf.matmul_ceiling()

    # --- Data ----------------------------------------------------------------------------
    train_iter = pipeline.make_train_iter(
        config,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        start_position=data_state.get("position", 0),
    )

    metric_log = progress.MetricLog(
        workdir,
        config.total_steps,
        start_step,
        start_time,
        active=jax.process_index() == 0,
        peak_flops=peak,
        measured=not config.peak_flops_per_device,
    )
    evaluator = evaluate_lib.Evaluator(config, family, module, mesh, rules)
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    eval_step = saved = None
    window = {"time": time.perf_counter(), "audio": 0.0, "flops": 0.0, "steps": 0}
    flops_by_shape: dict[tuple, float] = {}
    step_shapes: dict[tuple, int] = {}  # batch shapes the train step was built for → rebuilds

    def save(step):
        nonlocal saved
        ckpt.save(step, state, {"position": train_iter.position, "stats": train_iter.stats()})
        saved = step

    def check_finite(step):
        if int(state["nonfinite"]) and not config.skip_nonfinite:
            ckpt.wait()
            good = ckpt.verified_step  # restored and verified, or written by this run
            raise FloatingPointError(
                f"non-finite loss or gradient at or before step {step}; stopping without "
                "saving. "
                + (
                    f"The last good checkpoint is step {good} in {ckpt.directory}. "
                    if good is not None
                    else f"No checkpoint in {ckpt.directory} is known to be good. "
                )
                + "Lower optim.lr, check the data, or set skip_nonfinite=True to skip such "
                "steps."
            )

    # On leaving, also by an error: the input threads stop first (see BatchIterator.close),
    # then the metric files are closed and (in `train`) the checkpoint in flight finished.
    with (
        jax.set_mesh(mesh),
        nn.logical_axis_rules(rules),
        contextlib.closing(metric_log),
        contextlib.closing(train_iter),
    ):
        step = start_step
        last_step = min(config.total_steps, stop_at or config.total_steps)
        log.info("training steps %d..%d", start_step + 1, last_step)
        stopping = False
        newest: dict[str, jax.Array] = {}  # newest value of every metric (speech and text steps)
        while step < last_step:
            local = next(train_iter)
            if "audio_mask" in local:  # text batches (SpeechT5) carry no audio
                window["audio"] += (
                    float(local["audio_mask"].sum()) * jax.process_count() / config.data.sample_rate
                )
            shapes = {k: (v.shape[0] * jax.process_count(), *v.shape[1:]) for k, v in local.items()}
            key = tuple(sorted(shapes.items()))
            if key not in flops_by_shape:  # one count per length bucket, not per step
                flops_by_shape[key] = family.flops_per_batch(config.model, shapes)
            window["flops"] += flops_by_shape[key]
            built = perf.compilations()
            state, metrics = train_step(state, sharding.global_batch(local, mesh))
            compiled = perf.compilations() > built
            if compiled:
                # Once per batch shape is expected (a length bucket, or speech vs text);
                # again for a shape already seen means a dtype, sharding or static-argument
                # change is making XLA rebuild the step, which costs a compile every time.
                if key in step_shapes:
                    step_shapes[key] += 1
                    log.warning("train step rebuilt for batch shapes it had compiled: %s", shapes)
                else:
                    step_shapes[key] = 0
                    log.info("compiled the train step for batch shapes %s", shapes)
            newest.update(metrics)
            step += 1
            window["steps"] += 1
            metric_log.advance(compiled)

            if step % config.log_every == 0 or step == config.total_steps:
                metrics = jax.device_get(newest)
                elapsed = time.perf_counter() - window["time"]
                last_train = {k: float(v) for k, v in metrics.items()}
                last_train.update(
                    audio_s_per_s=window["audio"] / elapsed,
                    s_per_step=elapsed / window["steps"],
                    mfu=perf.mfu(window["flops"], elapsed, peak, jax.device_count()),
                    nonfinite_steps=int(state["nonfinite"]),
                    step_compiles=len(step_shapes),
                    step_recompiles=sum(step_shapes.values()),
                )
                metric_log.write(step, last_train)
                window = {"time": time.perf_counter(), "audio": 0.0, "flops": 0.0, "steps": 0}
                check_finite(step)

            if step % config.eval_every == 0 or step == config.total_steps:
                last_eval = evaluator.run(
                    state["params"],
                    config.data.eval_split,
                    max_batches=config.eval_max_batches,
                    model_state=state.get("model_state", {}),
                )
                metric_log.write(step, last_eval, prefix=config.data.eval_split)
                eval_step = step
                window["time"] = time.perf_counter()  # eval time is not training throughput
                metric_log.leave_out_elapsed()

            stopping = stop.agreed()
            if stopping or step % config.checkpoint_every == 0 or step == last_step:
                check_finite(step)  # never save parameters that a non-finite step has spoilt
                save(step)
            if stopping:
                log.warning("%s: saved step %d, exiting", stop.received or "peer stopped", step)
                break

    stats = train_iter.stats()
    if any(stats.values()):
        log.info("input pipeline: %s", stats)
    return {
        "train": last_train,
        "eval": last_eval,
        "step": step,
        "start_step": start_step,
        "eval_step": eval_step,
        "saved": saved,
        "stopped": (stop.received or "another process's signal") if stopping else None,
    }


def main(overrides):
    platforms.skip_absent_accelerators()
    # force: app.run has already put absl's handler on the root logger, which would drop INFO.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax narrates every file it writes
    logging.info("%s", hostmem.status())
    try:
        config = config_lib.apply_overrides(config_lib.load_file(_CONFIG.value), overrides)
        maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        if jax.process_index() != 0:  # process 0 narrates; the others only warn
            logging.getLogger().setLevel(logging.WARNING)
        train(config, _WORKDIR.value, stop_at=_STOP_AT.value)
    except (
        config_lib.ConfigError,
        checkpoint_lib.CheckpointError,
        pipeline.DataError,
        FloatingPointError,
    ) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)


if __name__ == "__main__":
    # Overrides go through config.apply_overrides (not absl), so that an unknown key or a
    # wrong type is one ConfigError line naming the key, like every other config mistake.
    app.run(
        main,
        flags_parser=lambda argv: config_lib.parse_command_line(argv, ("config", "workdir")),
    )
