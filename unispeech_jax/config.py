"""Config loading, overrides and validation.

Configs are Python files with `get_config() -> ml_collections.ConfigDict` (see `configs/`).
Command-line overrides (`--config.KEY=VALUE`) go through `apply_overrides`, which rejects
unknown keys (suggesting the nearest) and wrong types; `validate` adds the checks that need
the whole config (types and ranges of every key, mesh against devices, batch against the
data axis), so that a mistake is one clear message before anything is compiled; `load_saved`
reads a run's config.json with the same checks. The CLIs parse their flags with
`parse_command_line` and check `--workdir` with `writable_workdir`, for the same reason.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import math
import pathlib
import tempfile
from collections.abc import Sequence

import ml_collections
from absl import flags

from unispeech_jax import models
from unispeech_jax.data import data_config, tasks
from unispeech_jax.data.stats import DataError
from unispeech_jax.errors import ConfigError, usage_error
from unispeech_jax.models import family, unispeech

REQUIRED_KEYS = (
    "seed",
    "total_steps",
    "checkpoint_every",
    "eval_every",
    "data",
    "model",
    "optim",
    "mesh",
)
MESH_AXES = ("data", "fsdp", "tensor")


def load_module(path: str | pathlib.Path):
    """Imports a config file as a module (a config may reuse another's recipe functions)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Imports a config file and returns its `get_config()`, locked against new keys."""
    config = load_module(path).get_config()
    config.lock()
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]):
    """Applies `a.b=value` strings (the same syntax as `--config.a.b=value`).

    Values are parsed as Python literals when they parse, otherwise taken as strings (split
    at commas for a tuple-of-strings key).
    Unknown keys and wrong types raise ConfigError.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        *parents, leaf = key.split(".")
        node = config
        for i, name in enumerate(parents + [leaf]):
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                raise ConfigError(
                    f"unknown config key {'.'.join(key.split('.')[: i + 1])!r} in override "
                    f"{item!r}{_suggest(name, node)}"
                )
            if i < len(parents):
                node = node[name]
        old = node[leaf]
        # ConfigDict takes True for an int (bool is an int subclass) and None for anything.
        if old is not None and (
            value is None or (isinstance(value, bool) and not isinstance(old, bool))
        ):
            raise ConfigError(
                f"config key {key!r} is of type {type(old).__name__}; got {value!r} "
                f"in override {item!r}"
            )
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        elif (
            isinstance(value, str)
            and isinstance(old, tuple)
            and all(isinstance(v, str) for v in old)
        ):  # a tuple of strings: a,b -> ('a', 'b')
            value = tuple(v for v in value.split(",") if v)
        try:
            node[leaf] = value
        except TypeError:
            raise ConfigError(
                f"config key {key!r} is of type {type(old).__name__}; got {value!r} "
                f"({type(value).__name__}) in override {item!r}"
            ) from None
    return config


def parse_command_line(
    argv: list[str], required: Sequence[str] = (), positional: bool = False
) -> list[str]:
    """absl's `flags_parser` for the CLIs: parses the flags and returns the
    `--config.KEY=VALUE` overrides as `KEY=VALUE` (for `apply_overrides`), or with
    `positional` the non-flag arguments (a CLI that takes files and no overrides).

    A mistyped or missing flag, or a stray argument, is one line on stderr and exit status 2
    (absl's own parser prints a traceback or its usage text).
    """
    prefix = "--config."
    overrides = [] if positional else [a[len(prefix) :] for a in argv[1:] if a.startswith(prefix)]
    try:
        extra = flags.FLAGS([a for a in argv if positional or not a.startswith(prefix)])[1:]
    except flags.Error as e:
        usage_error(f"{e}; see --helpshort")
    if extra and not positional:
        usage_error(f"unexpected arguments {extra}; overrides are --config.KEY=VALUE")
    missing = [f"--{name}" for name in required if flags.FLAGS[name].value is None]
    if missing:
        usage_error(f"{' and '.join(missing)} required; see --helpshort")
    return extra if positional else overrides


def writable_workdir(path: str | pathlib.Path, create: bool = True) -> pathlib.Path:
    """`path` as a directory this process can write into (made if missing and `create`),
    else ConfigError: checked before a run builds anything."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"workdir {path} is a file, not a directory")
    if not create and not path.is_dir():
        raise ConfigError(f"workdir {path} does not exist")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Permission bits do not tell (root, ACLs, read-only mounts): try to write.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"workdir {path} cannot be written: {e.strerror or e}") from None
    return path


def _suggest(name: str, node: ml_collections.ConfigDict) -> str:
    """'; did you mean ...?' naming the closest keys of `node`, or ''."""
    if not isinstance(node, ml_collections.ConfigDict):
        return ""
    close = difflib.get_close_matches(name, list(node.keys()), n=2)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def to_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Inverse of `to_json`; JSON lists come back as tuples, as configs write them."""

    def fix(x):
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(fix(v) for v in x)
        return x

    config = ml_collections.ConfigDict(fix(json.loads(text)))
    config.lock()
    return config


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> dict[str, int]:
    """Resolves the mesh sizes; one axis may be -1 ("all remaining devices")."""
    sizes = {axis: int(mesh_cfg.shape[axis]) for axis in MESH_AXES}
    unknown = [a for a, s in sizes.items() if s == -1]
    if len(unknown) > 1:
        raise ConfigError(f"mesh.shape: only one axis may be -1, got {unknown}")
    if any(s == 0 or s < -1 for s in sizes.values()):
        raise ConfigError(f"mesh.shape: sizes must be positive or -1, got {sizes}")
    known = math.prod(s for s in sizes.values() if s != -1)
    if unknown:
        if num_devices % known:
            raise ConfigError(
                f"mesh.shape {sizes}: the fixed axes ({known} devices) do not divide "
                f"the {num_devices} available devices"
            )
        sizes[unknown[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        raise ConfigError(
            f"mesh.shape {sizes} needs {math.prod(sizes.values())} devices, "
            f"but {num_devices} are available"
        )
    return sizes


def check(config: ml_collections.ConfigDict):
    """Raises ConfigError for a config that no machine can run: a required key missing, a
    value of another type than the key's or out of its range (every section: data and model
    by their own checks, the others against `defaults()`), a bad combination."""
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ConfigError(f"config is missing required top-level keys: {missing}")
    try:
        _, task = tasks.split_config(config)
        data_config.check_config(config.data, task and task.name)
    except DataError as e:
        raise ConfigError(str(e)) from None
    for axis in (r[1] for r in config.mesh.rules):
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        bad = [a for a in axes if a is not None and a not in MESH_AXES]
        if bad:
            raise ConfigError(f"mesh.rules map to unknown mesh axes {bad}; known: {MESH_AXES}")
    try:
        models.get(config.model.name).check_config(config)
    except (ValueError, TypeError) as e:  # the family's own checks of its keys
        raise ConfigError(str(e)) from None
    for key in ("total_steps", "checkpoint_every", "eval_every"):
        if isinstance(config[key], bool) or not isinstance(config[key], int):
            raise ConfigError(f"{key} must be an integer, got {config[key]!r}")
        if config[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {config[key]}")
    reference = defaults()
    for section in set(config) - {"data", "model"}:
        _check_types(config[section], reference, section)


def _check_types(value, reference: ml_collections.ConfigDict, key: str):
    """ConfigError unless `value`, at `key` ('a.b') of a config, is of the type `reference`
    (the config of `defaults()`) has there, recursively; unknown keys too."""
    *parents, leaf = key.split(".")
    node = reference
    for name in parents:
        node = node[name]
    if leaf not in node:
        raise ConfigError(f"unknown config key {key!r}{_suggest(leaf, node)}")
    expected = node[leaf]
    if isinstance(expected, ml_collections.ConfigDict):
        if not isinstance(value, ml_collections.ConfigDict):
            raise ConfigError(f"{key} must be a section of keys, got {value!r}")
        for name in value:
            _check_types(value[name], reference, f"{key}.{name}")
    elif expected is not None and not family.is_of_type(value, type(expected)):
        raise ConfigError(f"{key} must be a {type(expected).__name__}, got {value!r}")


def validate(config: ml_collections.ConfigDict, num_devices: int, process_count: int = 1):
    """Raises ConfigError for a config that cannot run on this many devices/processes (or on
    any: `check`)."""
    check(config)
    sizes = mesh_shape(config.mesh, num_devices)
    batch_shards = sizes["data"] * sizes["fsdp"]
    multiple = int(config.data.batch_multiple)
    if multiple % batch_shards:
        raise ConfigError(
            f"data.batch_multiple={multiple} must be a multiple of the batch-sharded mesh axes "
            f"(data×fsdp = {batch_shards}) so every batch splits evenly over devices"
        )
    if multiple % process_count:
        raise ConfigError(
            f"data.batch_multiple={multiple} must be a multiple of the "
            f"{process_count} processes (each host loads an equal share)"
        )
    grad_accum = int(config.optim.grad_accum)
    if grad_accum < 1 or multiple % (grad_accum * batch_shards):
        raise ConfigError(
            f"optim.grad_accum={grad_accum}: data.batch_multiple={multiple} must be "
            f"divisible by grad_accum × data × fsdp = {grad_accum * batch_shards}"
        )
    return sizes


def load_saved(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run saved (`<workdir>/config.json`), checked as training checks a config
    (`check`): a hand-edited file is one ConfigError naming the file and the key."""
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{config_file} not found: is {workdir} a training workdir?")
    try:
        config = from_json(config_file.read_text())
        check(config)
    except ValueError as e:  # ConfigError, and JSONDecodeError for a file that is no JSON
        raise ConfigError(f"{config_file}: {e}") from None
    return config


def mesh_config(data: int = -1, fsdp: int = 1, tensor: int = 1) -> ml_collections.ConfigDict:
    """Mesh sizes (-1: all remaining devices) and the logical→mesh axis rules.

    With the default rules, `data` and `fsdp` split the batch; `fsdp` also splits parameters
    and optimizer state along their model dimension; `tensor` splits attention heads, FFN
    hidden units and their activations.
    """
    return ml_collections.ConfigDict(
        dict(
            shape=dict(data=data, fsdp=fsdp, tensor=tensor),
            rules=(
                ("act_batch", ("data", "fsdp")),
                ("act_length", None),
                ("act_embed", None),
                ("act_mlp", "tensor"),
                ("act_heads", "tensor"),
                ("layers", None),
                ("embed", "fsdp"),
                ("mlp", "tensor"),
                ("heads", "tensor"),
                ("vocab", None),
                ("codes", None),
                ("conv_in", None),
                ("conv_out", "fsdp"),
                ("conv_kernel", None),
                # SpeechT5's small or per-head axes: replicated
                ("head_dim", None),
                ("relpos", None),
                ("mel", None),
                ("prenet", None),
                ("speaker", None),
            ),
        )
    )


def defaults() -> ml_collections.ConfigDict:
    """Every key a training config has, at the UniSpeech-base values of the official recipe.

    Config files start from this and state what they change; the result is locked, so a typo
    in a config file or an override is an error, not a silently ignored key.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 400_000
    c.log_every = 100
    c.eval_every = 10_000
    c.eval_max_batches = 0  # 0: the whole split
    c.checkpoint_every = 5_000
    c.keep_checkpoints = 3
    c.skip_nonfinite = False  # True: skip a step whose loss/grad is NaN/Inf, not stop
    c.peak_flops_per_device = 0.0  # 0: measure the matmul ceiling at start (for MFU)
    c.init_from = ""  # a workdir whose params initialise this run (fine-tuning)
    c.init_from_step = -1  # which of its checkpoints; -1 = the newest

    # Input: every key of unispeech_jax/data/data_config.py, at the pre-training recipe's lengths.
    c.data = data_config.default_config()
    c.data.corpus.hours = 10.0
    c.data.max_sample_len = 250_000
    c.data.bucket_boundaries = (64_000, 128_000, 192_000, 250_000)
    c.data.max_samples_per_batch = 11_200_000
    c.data.max_label_len = 512
    c.data.num_parallel_calls = 8

    # Model: every key of unispeech_jax/models/unispeech.py (documented there), base values.
    c.model = unispeech.default_config()

    # Optimizer (unispeech_jax/optim.py documents every key).
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=5e-4,
            schedule="polynomial",
            warmup_steps=32_000,
            end_lr=0.0,
            power=1.0,
            phase_ratio=(0.1, 0.4, 0.5),
            init_lr_scale=0.01,
            final_lr_scale=0.05,
            b1=0.9,
            b2=0.98,
            eps=1e-6,
            weight_decay=0.01,
            grad_clip=10.0,
            grad_accum=1,
            freeze_steps=0,
            freeze_regex="",
        )
    )

    c.mesh = mesh_config()
    return c
