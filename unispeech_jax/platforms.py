"""Which JAX platforms to probe: only the CPU on a machine that can have nothing else.

With `libtpu` installed (the `test` extra brings it for the ahead-of-time TPU compiler,
unispeech_jax/aot.py) and JAX_PLATFORMS unset, JAX tries to start a TPU backend even where
there is no TPU: libtpu then prints "could not determine TPU worker hostnames" errors before
JAX falls back to the CPU. Where the PCI bus shows no TPU chip (JAX's own test, the one its
Cloud TPU set-up uses) and no PJRT plugin (GPU) is installed, the CPU is all JAX could use,
so saying so up front changes nothing but the noise. TPU and GPU hosts, and any explicit
JAX_PLATFORMS or `jax_platforms` setting, are left alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import jax


def only_cpu_possible() -> bool:
    """No TPU chip on the PCI bus and no PJRT plugin package (jax_plugins) installed."""
    from jax._src import hardware_utils  # JAX's PCI scan; no public equivalent

    if hardware_utils.num_available_tpu_chips_and_device_id()[0]:
        return False
    if importlib.util.find_spec("jax_plugins") is not None:
        return False
    return not importlib.metadata.entry_points(group="jax_plugins")


def skip_absent_accelerators() -> None:
    """Sets `jax_platforms` to 'cpu' when the environment chose no platforms and
    `only_cpu_possible`; the CLIs call it first, before any JAX computation."""
    if "JAX_PLATFORMS" in os.environ or "JAX_FORCE_TPU_INIT" in os.environ:
        return
    if only_cpu_possible():
        jax.config.update("jax_platforms", "cpu")
