"""Throughput accounting: the machine's matmul ceiling and model FLOP utilisation (MFU)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_ceiling(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 FLOP/s of one device on a jitted n×n matmul (best of repeats).

    MFU is quoted against this measured ceiling rather than a datasheet number, because on
    CPU the ceiling depends on cores, threads and the BLAS XLA picked. The best repeat, not
    the median, because a ceiling measured during a burst of foreign load would inflate MFU.
    """
    a = jnp.ones((n, n), jnp.float32)
    dot = jax.jit(lambda x: x @ x)
    dot(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.min(times))


def mfu(flops: float, seconds: float, peak_per_device: float, num_devices: int) -> float:
    """Fraction of the devices' peak that `flops` done in `seconds` represents."""
    return flops / max(seconds, 1e-9) / (peak_per_device * num_devices)


# JAX lowers a jitted function once per new input signature, before it compiles the result or
# loads it from the persistent compilation cache; counting lowerings therefore counts the
# executables a process needed, whichever way it got them.
_LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_lowerings = 0
_listening = False


def _on_event(event: str, duration: float, **kwargs) -> None:
    global _lowerings
    if event == _LOWERING_EVENT:
        _lowerings += 1


def compilations() -> int:
    """Executables this process has built (lowered) so far, counted from the first call."""
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _listening = True
    return _lowerings
