"""Mesh, logical axis rules, sharded initialisation and global batches.

The model names its axes logically (docs/ARCHITECTURE.md); `config.mesh.rules` maps those
names to the mesh axes `data`, `fsdp` and `tensor`. State is created abstractly first
(`jax.eval_shape`), its shardings derived from the logical names, and then materialised
by a jitted init with those `out_shardings`, so no unsharded copy of a large model exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from unispeech_jax import config as config_lib


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices=None) -> Mesh:
    """Builds the (data, fsdp, tensor) mesh over `devices` (default: all, of all processes)."""
    devices = list(devices) if devices is not None else jax.devices()
    sizes = config_lib.mesh_shape(mesh_cfg, len(devices))
    # Auto axes: the partitioner propagates shardings from the logical constraints we place.
    return jax.make_mesh(
        tuple(sizes[a] for a in config_lib.MESH_AXES),
        config_lib.MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * len(config_lib.MESH_AXES),
        devices=devices,
    )


def rules(mesh_cfg: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
    """The logical→mesh rules as flax wants them: ((logical, mesh axis or axes or None), ...)."""
    return tuple(
        (name, tuple(axis) if isinstance(axis, (list, tuple)) else axis)
        for name, axis in mesh_cfg.rules
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data and fsdp; the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp")))


def state_shardings(abstract_state, mesh: Mesh, logical_rules):
    """Maps an abstract state with logically-partitioned boxes to NamedShardings.

    Leaves without logical names (step counters, unannotated params) are replicated.
    """
    specs = nn.get_partition_spec(abstract_state)
    return nn.logical_to_mesh_sharding(specs, mesh, logical_rules)


def abstract_state(init_fn: Callable[[jax.Array], Any], rng: jax.Array, mesh: Mesh, logical_rules):
    """The state `init_fn(rng)` would make, not computed: (unboxed ShapeDtypeStructs that carry
    their shardings, the shardings). What `jit(...).lower` and checkpoint restores take."""
    with nn.logical_axis_rules(logical_rules):
        boxed = jax.eval_shape(init_fn, rng)
        shardings = state_shardings(boxed, mesh, logical_rules)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(boxed),
        shardings,
    )
    return abstract, shardings


def materialize(init_fn: Callable[[jax.Array], Any], rng: jax.Array, shardings, logical_rules):
    """Runs `init_fn(rng)` directly into `shardings` (from `abstract_state`): unboxed state."""
    with nn.logical_axis_rules(logical_rules):
        return jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings)(rng)


def init_sharded(init_fn: Callable[[jax.Array], Any], rng: jax.Array, mesh: Mesh, logical_rules):
    """Runs `init_fn(rng)` directly into its shardings; returns (unboxed state, shardings)."""
    _, shardings = abstract_state(init_fn, rng, mesh, logical_rules)
    return materialize(init_fn, rng, shardings, logical_rules), shardings


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each host's share into global arrays sharded along the batch axis."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def bytes_per_device(tree) -> dict[str, int]:
    """Bytes of `tree` held by each addressable device (for FSDP accounting and logs)."""
    totals: dict[str, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            key = str(shard.device)
            totals[key] = totals.get(key, 0) + shard.data.size * shard.data.dtype.itemsize
    return totals


def param_count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
