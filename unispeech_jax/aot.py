r"""Ahead-of-time compile of the real train step for a TPU or GPU topology, on any host.

    python -m unispeech_jax.aot --config configs/base.py --topology v5p:4x4x4 \
        [--config.mesh.shape.fsdp=8 ...] [--buckets=250000] [--efficiency=0.5] [--json=F]

Builds the step exactly as `unispeech_jax.train` does (`step.build`: same mesh rules, donated
state) over the devices of the topology (`jax.experimental.topologies`; a TPU topology needs
`libtpu`, a GPU one (`h100:1x1x8`) the CUDA plugin of jax[cuda12]; both load without the
hardware), compiles it for every batch shape the input pipeline makes (one length
bucket each, `pipeline.train_batch_shapes`) and prints, as each one compiles, per device:
parameter + optimizer bytes, temporaries, the total against the chip's HBM, FLOPs and bytes
accessed, the roofline step-time bound, the MFU a step at `--efficiency` of that bound would
reach, and the collectives of the compiled HLO. XLA's `optimal_seconds` estimate is not
used (it comes out negative for these steps). A config that does not divide the topology is
one error line (exit status 2); a batch shape that does not fit in HBM makes the exit status 1.
"""

from __future__ import annotations

import os

# The libtpu of every other JAX process on the host (a CPU-only JAX loads it too) holds its
# lockfile; compiling for a topology touches no chip, so sharing the library is safe.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from unispeech_jax import config as config_lib  # noqa: E402
from unispeech_jax import models, sharding  # noqa: E402
from unispeech_jax.data import pipeline  # noqa: E402
from unispeech_jax.step import build  # noqa: E402

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: float
    peak_flops: float  # bf16 dense FLOP/s per chip
    hbm_bytes_per_s: float
    cores: int = 0  # streaming multiprocessors (GPUs: part of XLA's compile target)


# Per-chip figures by JAX device_kind, from Google Cloud's TPU system-architecture pages
# (cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e: "peak compute per chip (bf16)", "HBM
# capacity and bandwidth"). One JAX device is one chip on these generations (v4 and v5p:
# megacore, its two TensorCores as one device).
CHIPS = {
    "TPU v4": Chip("v4", 32 * GIB, 275e12, 1200e9),
    "TPU v5 lite": Chip("v5e", 16 * GIB, 197e12, 819e9),
    "TPU v5": Chip("v5p", 95 * GIB, 459e12, 2765e9),
    "TPU v6 lite": Chip("v6e", 32 * GIB, 918e12, 1640e9),
    # NVIDIA H100 SXM5 80 GB datasheet: 989 TFLOP/s bf16 dense, 3.35 TB/s, 132 SMs; the HBM
    # is the device memory CUDA reports on one (JAX preallocates 75 % of it by default:
    # XLA_PYTHON_CLIENT_MEM_FRACTION).
    "NVIDIA H100 80GB HBM3": Chip("h100", 84_929_347_584, 989e12, 3352e9, cores=132),
}
# --topology prefix of a GPU target -> its device kind in CHIPS
GPUS = {"h100": "NVIDIA H100 80GB HBM3"}

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2}
_DTYPE_BYTES.update({"s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8})


class AotError(ValueError):
    """The topology or libtpu cannot be used; the message says why and what to do."""


# ----------------------------------------------------------------------------------------
# Topology
# ----------------------------------------------------------------------------------------


def libtpu_hint() -> str:
    """How to install the libtpu this JAX pins (its `tpu` extra)."""
    pins = [
        r.split(";")[0].strip()
        for r in importlib.metadata.requires("jax") or ()
        if r.startswith("libtpu") and "tpu" in r.split(";")[-1]
    ]
    pin = pins[0] if pins else "libtpu"
    return f"pip install '{pin}' (the libtpu of jax[tpu] for jax {jax.__version__})"


def topology_devices(name: str) -> list:
    """The devices of topology `name`: compile targets. TPU: 'v5e:2x2', 'v5p:4x4x4', ...;
    GPU: 'h100:PxHxD' (P partitions of H hosts of D GPUs each, e.g. 'h100:1x2x8')."""
    from jax.experimental import topologies

    kind = GPUS.get(name.split(":")[0])
    if kind is not None:
        if importlib.util.find_spec("jax_plugins") is None or (
            importlib.util.find_spec("jax_plugins.xla_cuda12") is None
        ):
            raise AotError(f"the CUDA plugin is not installed; {cuda_hint()}")
        target, shape = gpu_target_config(CHIPS[kind], kind), name.split(":", 1)[-1]
        try:
            topology = topologies.get_topology_desc(
                platform="cuda", target_config=target, topology=shape
            )
        except Exception as e:
            raise AotError(f"--topology={name!r}: {_first_line(e)}") from None
        return list(topology.devices)
    if importlib.util.find_spec("libtpu") is None:
        raise AotError(f"libtpu is not installed; {libtpu_hint()}")
    try:
        topology = topologies.get_topology_desc(topology_name=name, platform="tpu")
    except Exception as e:  # libtpu's errors are runtime errors with multi-line texts
        raise AotError(
            f"--topology={name!r} is not a TPU topology libtpu knows (GPUs: "
            f"{', '.join(f'{g}:PxHxD' for g in GPUS)}): {_first_line(e)}"
        ) from None
    if len({d.core_on_chip for d in topology.devices}) > 1:
        # libtpu describes a v4 slice one device per TensorCore; JAX runs a v4 chip's two
        # cores as one device (megacore) and make_mesh accepts only that layout.
        topology = topologies.get_topology_desc(
            topology_name=name, platform="tpu", chip_config_name="megacore"
        )
    return list(topology.devices)


def cuda_hint() -> str:
    """The two wheels of jax[cuda12] a compile needs (no CUDA libraries, no GPU)."""
    v = jax.__version__
    return f"pip install 'jax-cuda12-plugin=={v}' 'jax-cuda12-pjrt=={v}' (or 'jax[cuda12]')"


def gpu_target_config(chip: Chip, kind: str) -> str:
    """XLA's GPU compile target (a GpuTargetConfigProto text) for a Hopper chip: the device
    limits XLA's GPU compiler reads in place of a device (CUDA 12.8, cuDNN 9.8 runtime)."""
    return f"""gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: {chip.cores}
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: {int(chip.hbm_bytes_per_s)} l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: {int(chip.hbm_bytes)}
  shared_memory_per_block_optin: 232448 cuda_compute_capability {{ major: 9 }}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA" dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 }} device_description_str: "{kind}"
"""


def chip_of(devices) -> Chip:
    kind = devices[0].device_kind
    if kind not in CHIPS:
        raise AotError(f"no chip figures for device kind {kind!r}; known: {sorted(CHIPS)}")
    return CHIPS[kind]


# ----------------------------------------------------------------------------------------
# Compiled-HLO reading
# ----------------------------------------------------------------------------------------

_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([\w\-]+)\(")
_ARRAY = re.compile(r"\b(pred|[su](?:8|16|32|64)|bf16|f16|f32|f64|c64)\[([\d,]*)\]")
_CONDITION = re.compile(r"\bcondition=%?([\w.\-]+)")
_S32_CONSTANT = re.compile(r"=\s*s32\[\][^=]*\bconstant\((\d+)\)")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO result shape ('f32[8,128]{1,0}', a tuple of them, ...)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        total += _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
    return total


def _trip_count(condition: list[str]) -> int:
    """Trips of a while loop from its condition computation: a scan's loop counts from 0 to
    the one s32 constant it compares against (1 when the condition is not of that form)."""
    bounds = [int(m.group(1)) for line in condition for m in [_S32_CONSTANT.search(line)] if m]
    return bounds[0] if len(bounds) == 1 and any("direction=LT" in x for x in condition) else 1


def collectives(hlo: str) -> dict[str, dict[str, int]]:
    """Collectives of a compiled HLO module text: per kind (COLLECTIVES), `ops` in the text,
    `per_step` executions per step and `bytes` per step (their per-device result buffers)
    counting the collectives of a loop body (a scanned layer stack) once per trip.

    An asynchronous collective is a start/done pair; it is counted once, at its `-done`
    (whose result is the collective's output).
    """
    computations: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo.splitlines():
        head = _COMPUTATION.match(line)
        if head and "=" not in line.split("{")[0].split("(")[0]:
            current = head.group(2)
            computations[current] = []
            entry = current if head.group(1) else entry
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None:
            computations[current].append(line)

    # Executions of each computation per step: the entry once; a while body its trip count
    # times per execution of its caller; called computations as often as their caller.
    runs = {entry: 1} if entry else {}
    pending = [entry] if entry else []
    while pending:
        name = pending.pop()
        for line in computations.get(name, ()):
            condition = _CONDITION.search(line)
            trips = _trip_count(computations.get(condition.group(1), ())) if condition else 1
            for key, callee in re.findall(
                r"\b(body|calls|branch_computations)=\{?%?([\w.\-]+)", line
            ):
                times = runs[name] * (trips if key == "body" else 1)
                if callee in computations and runs.get(callee, 0) < times:
                    runs[callee] = times
                    pending.append(callee)

    found = {kind: {"ops": 0, "per_step": 0, "bytes": 0} for kind in COLLECTIVES}
    for name, lines in computations.items():
        for line in lines:
            m = _INSTRUCTION.match(line)
            if not m:
                continue
            shape, op = m.groups()
            kind = op.removesuffix("-done")
            if kind not in found or op.endswith("-start"):
                continue
            n = runs.get(name, 1)
            found[kind]["ops"] += 1
            found[kind]["per_step"] += n
            found[kind]["bytes"] += n * shape_bytes(shape)
    return found


# ----------------------------------------------------------------------------------------
# The report of one compiled step
# ----------------------------------------------------------------------------------------


def device_bytes(abstract_tree) -> int:
    """Bytes one device holds of a tree of ShapeDtypeStructs with shardings (the fullest)."""
    total = 0
    for leaf in jax.tree.leaves(abstract_tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return total


def check_divisible(abstract_state, mesh_sizes: dict[str, int]) -> None:
    """ConfigError naming the first state array whose sharded axis does not divide evenly
    over its mesh axes (jit refuses such a layout: the trainer could not run either)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
        for dim, axes in zip(leaf.shape, leaf.sharding.spec):
            axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
            split = math.prod(mesh_sizes[a] for a in axes)
            if dim % split:
                name = "/".join(str(getattr(k, "key", k)) for k in path)
                raise config_lib.ConfigError(
                    f"{name} {tuple(leaf.shape)}: its axis of {dim} does not split over mesh "
                    f"axes {'×'.join(axes)} = {split} devices; choose mesh sizes that divide it"
                )


def memory_report(memory, state_bytes: int, hbm_bytes: float) -> dict:
    """Per-device memory of a compiled step from its `memory_analysis()`: arguments and
    outputs (the donated state counted once: aliased), temporaries, code; fits or not."""
    total = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
        + memory.generated_code_size_in_bytes
    )
    return {
        "state_bytes": state_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        "temp_bytes": memory.temp_size_in_bytes,
        "code_bytes": memory.generated_code_size_in_bytes,
        "total_bytes": total,
        "hbm_bytes": hbm_bytes,
        "fits": total <= hbm_bytes,
        "headroom_bytes": hbm_bytes - total,
    }


def roofline(flops, bytes_accessed, model_flops: float, chip: Chip, eff: float):
    """Step-time bound per device from compute and HBM traffic, and the MFU (model FLOPs per
    device over peak) of a step that takes bound / eff. `flops`/`bytes_accessed` are XLA's
    counts, None when its compiler gave none (then the bound is the model's compute alone).

    XLA's cost analysis counts a loop body once, so for a scanned layer stack its FLOPs and
    bytes cover one layer of the stack: the compute time takes the larger of XLA's and the
    model's analytic FLOPs, and the HBM time is a lower bound (exact with
    `model.scan_layers=False`).
    """
    compute_s = max(flops or 0.0, model_flops) / chip.peak_flops
    memory_s = None if bytes_accessed is None else bytes_accessed / chip.hbm_bytes_per_s
    bound = max(compute_s, memory_s or 0.0)
    step_s = bound / eff
    return {
        "compute_s": compute_s,
        "memory_s": memory_s,
        "bound_s": bound,
        "bound_by": "compute" if compute_s >= (memory_s or 0.0) else "HBM bandwidth",
        "efficiency": eff,
        "projected_step_s": step_s,
        "projected_mfu": model_flops / (step_s * chip.peak_flops) if step_s else 0.0,
    }


def compile_step(config, devices, widths=()) -> Iterator[dict]:
    """Compiles the train step of `config` for `devices`: one report per batch shape (or per
    shape whose width is in `widths`), each compiled when the iterator reaches it, so a caller
    can show every bucket as it is done. Raises ConfigError at once, before any compile, for
    a config that cannot run."""
    processes = len({d.process_index for d in devices})
    sizes = config_lib.validate(config, len(devices), processes)
    models.resolve_config(models.get(config.model.name), config)  # as train.py does
    mesh = sharding.make_mesh(config.mesh, devices)
    built = build(config, mesh)
    shapes = pipeline.train_batch_shapes(config)
    if widths:
        shapes = [s for s in shapes if _width(s) in widths]
        if not shapes:
            raise config_lib.ConfigError(f"--buckets={sorted(widths)}: no such batch shape")
    check_divisible(built.abstract_state["params"], sizes)  # named by the parameter first
    check_divisible(built.abstract_state, sizes)
    return (_compile_shape(config, built, mesh, sizes, shape, len(devices)) for shape in shapes)


def _compile_shape(config, built, mesh, sizes: dict, shape: dict, n_devices: int) -> dict:
    """The report of one batch shape ({name: (global shape, dtype)}): sizes, and XLA's memory
    and cost analyses, or `out_of_memory` with XLA's message when it would not fit."""
    state = built.abstract_state
    batch_sharding = sharding.batch_sharding(mesh)
    batch = {
        k: jax.ShapeDtypeStruct(s, dt, sharding=batch_sharding) for k, (s, dt) in shape.items()
    }
    global_shapes = {k: s for k, (s, _) in shape.items()}
    r = {
        "batch": {k: list(s) for k, s in global_shapes.items()},
        "mesh": sizes,
        "param_bytes": device_bytes(state["params"]),
        "opt_state_bytes": device_bytes(state["opt_state"]),
        "state_bytes": device_bytes(state),
        "batch_bytes": device_bytes(batch),
        "model_flops": built.family.flops_per_batch(config.model, global_shapes) / n_devices,
    }
    start = time.perf_counter()
    try:
        with jax.set_mesh(mesh), nn.logical_axis_rules(built.rules):
            compiled = built.train_step.lower(state, batch).compile()
    except jax.errors.JaxRuntimeError as e:
        # XLA refuses a program whose buffers cannot all be placed in HBM.
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        r.update(compile_s=time.perf_counter() - start, out_of_memory=_first_line(e))
        return r
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # XLA's GPU compile-only client gives no cost analysis (None): model FLOPs only.
    r.update(
        compile_s=time.perf_counter() - start,
        memory=compiled.memory_analysis(),
        flops=float(cost.get("flops", 0.0)) if cost else None,
        bytes_accessed=float(cost.get("bytes accessed", 0.0)) if cost else None,
        collectives=collectives(compiled.as_text()),
    )
    return r


def _width(shape: dict) -> int:
    """The bucket width of a batch shape: audio samples, else text tokens."""
    key = "audio" if "audio" in shape else next(k for k in ("text", "text_source") if k in shape)
    return int(shape[key][0][1])


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGT])\b")


def out_of_memory_report(message: str, argument_bytes: int, hbm_bytes: float) -> dict:
    """The memory verdict of a step XLA would not compile for lack of HBM. Its message's first
    two sizes are what the step needs and what the chip offers ('Used 20.5G of 15.75G hbm');
    when the first counts only the temporaries ('... temporaries (26.86G) exceeds available
    HBM (15.75G)'), the arguments (state and batch) are added to it."""
    sizes = [float(v) * 1024 ** (" KMGT".index(u)) for v, u in _SIZE.findall(message)]
    if len(sizes) < 2:
        needed, available = None, hbm_bytes
    else:
        needed, available = sizes[0], sizes[1]
        needed += argument_bytes if "temporaries" in message else 0
    return {
        "total_bytes": needed,
        "hbm_bytes": available,
        "fits": False,
        "headroom_bytes": None if needed is None else available - needed,
        "error": message,
    }


def finish(report: dict, chip: Chip, efficiency: float) -> dict:
    """Adds the memory verdict and the roofline to a `compile_step` report (JSON-able)."""
    out = {k: v for k, v in report.items() if k != "memory"}
    if "out_of_memory" in report:
        out["memory"] = out_of_memory_report(
            report["out_of_memory"], report["state_bytes"] + report["batch_bytes"], chip.hbm_bytes
        )
        return out
    out["memory"] = memory_report(report["memory"], report["state_bytes"], chip.hbm_bytes)
    out["roofline"] = roofline(
        report["flops"], report["bytes_accessed"], report["model_flops"], chip, efficiency
    )
    return out


def _gib(x: float) -> str:
    return f"{x / GIB:.2f} GiB"


def format_report(r: dict, chip: Chip) -> str:
    m = r["memory"]
    batch = " ".join(f"{k}{tuple(s)}" for k, s in r["batch"].items() if k != "weight")
    if "error" in m:
        over = f"over by {_gib(-m['headroom_bytes'])}: " if m["headroom_bytes"] is not None else ""
        return "\n".join(
            [
                f"batch {batch}  (compile stopped after {r['compile_s']:.0f} s)",
                f"  memory/device: params {_gib(r['param_bytes'])} + optimizer "
                f"{_gib(r['opt_state_bytes'])}, batch {_gib(r['batch_bytes'])}",
                f"  DOES NOT FIT ({over}XLA: {m['error']})",
            ]
        )
    t = r["roofline"]
    verdict = (
        f"FITS ({_gib(m['headroom_bytes'])} to spare)"
        if m["fits"]
        else f"DOES NOT FIT (over by {_gib(-m['headroom_bytes'])})"
    )
    lines = [
        f"batch {batch}  (compiled in {r['compile_s']:.0f} s)",
        f"  memory/device: params {_gib(r['param_bytes'])} + optimizer "
        f"{_gib(r['opt_state_bytes'])} (state {_gib(m['state_bytes'])}), batch "
        f"{_gib(r['batch_bytes'])}, temporaries {_gib(m['temp_bytes'])}, code "
        f"{_gib(m['code_bytes'])}",
        f"  total {_gib(m['total_bytes'])} of {_gib(m['hbm_bytes'])} HBM ({chip.name}): {verdict}",
        (
            f"  per device: {r['flops'] / 1e12:.3f} TFLOP by XLA (a loop body counted once), "
            f"{r['model_flops'] / 1e12:.3f} by the model's count; "
            f"{r['bytes_accessed'] / 1e9:.2f} GB accessed by XLA"
            if r["flops"] is not None
            else f"  per device: {r['model_flops'] / 1e12:.3f} TFLOP by the model's count "
            "(XLA gave no cost analysis: no HBM time)"
        ),
        f"  roofline: compute {t['compute_s'] * 1e3:.1f} ms, "
        + (f"HBM {t['memory_s'] * 1e3:.1f} ms " if r["bytes_accessed"] is not None else "")
        + f"→ ≥ {t['bound_s'] * 1e3:.1f} ms/step ({t['bound_by']}); at {t['efficiency']:.0%} of it "
        f"{t['projected_step_s'] * 1e3:.1f} ms/step, MFU {t['projected_mfu']:.1%}",
        "  collectives per step: "
        + (
            ", ".join(
                f"{k} {c['per_step']}× ({c['ops']} in HLO) {c['bytes'] / 1e6:.1f} MB"
                for k, c in r["collectives"].items()
                if c["ops"]
            )
            or "none"
        ),
    ]
    return "\n".join(lines)


def report(config, topology: str, devices, widths=(), efficiency: float = 0.5) -> Iterator[dict]:
    """The finished report of every batch shape of `config` on `devices`, each compiled when
    the iterator reaches it (see the module doc); config errors are raised at once."""
    if not 0 < efficiency <= 1:
        raise config_lib.ConfigError(f"--efficiency={efficiency} must be in (0, 1]")
    chip = chip_of(devices)
    try:
        raw = compile_step(config, devices, widths)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"topology {topology} ({len(devices)} devices): {e}") from None
    return (finish(r, chip, efficiency) for r in raw)


def _define_flags():
    """Command-line flags; defined only when this module is the program (train.py defines
    its own --config)."""
    return (
        flags.DEFINE_string("config", None, "Config file; override keys with --config.KEY=V."),
        flags.DEFINE_string(
            "topology",
            None,
            "TPU topology, generation:shape, e.g. v4:2x2x1, v5e:4x4, v5p:4x4x4; or GPUs, "
            "h100:PxHxD (partitions x hosts x GPUs per host), e.g. h100:1x1x8.",
        ),
        flags.DEFINE_string(
            "buckets",
            "",
            "Comma-separated batch widths to compile (audio samples, or text tokens); default "
            "every bucket.",
        ),
        flags.DEFINE_float(
            "efficiency",
            0.5,
            "Fraction of the roofline bound a real step reaches (an assumption: measure it on "
            "the hardware); sets the projected step time and MFU.",
        ),
        flags.DEFINE_string("json", None, "Also write the reports as JSON to this file."),
    )


def main(overrides):
    _CONFIG, _TOPOLOGY, _BUCKETS, _EFFICIENCY, _JSON = _FLAGS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", force=True)
    try:
        config = config_lib.apply_overrides(config_lib.load_file(_CONFIG.value), overrides)
        widths = {int(w) for w in _BUCKETS.value.split(",") if w.strip()}
        devices = topology_devices(_TOPOLOGY.value)
        chip = chip_of(devices)
        print(
            f"{_TOPOLOGY.value}: {len(devices)} × {chip.name} ({_gib(chip.hbm_bytes)} HBM, "
            f"{chip.peak_flops / 1e12:.0f} TFLOP/s bf16, {chip.hbm_bytes_per_s / 1e9:.0f} GB/s)",
            flush=True,
        )
        reports = []
        # Each bucket is printed (and the JSON rewritten) as it compiles: a large config's
        # buckets take minutes each, and a run cut short keeps what it finished.
        for r in report(config, _TOPOLOGY.value, devices, widths, _EFFICIENCY.value):
            if not reports:
                print(f"mesh {r['mesh']}")
            print(format_report(r, chip), flush=True)
            reports.append(r)
            if _JSON.value:
                with open(_JSON.value, "w") as f:
                    json.dump(
                        {"topology": _TOPOLOGY.value, "chip": chip.name, "reports": reports}, f
                    )
    except (config_lib.ConfigError, AotError, pipeline.DataError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    fits = all(r["memory"]["fits"] for r in reports)
    if fits:
        worst = max(r["memory"]["total_bytes"] for r in reports)
        print(f"every batch shape fits; the largest needs {_gib(worst)} per device")
    else:
        print("NOT EVERY BATCH SHAPE FITS")
    sys.exit(0 if fits else 1)


if __name__ == "__main__":
    _FLAGS = _define_flags()
    app.run(
        main, flags_parser=lambda argv: config_lib.parse_command_line(argv, ("config", "topology"))
    )
