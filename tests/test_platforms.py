"""On a machine with no accelerator, a command with JAX_PLATFORMS unset uses the CPU without
probing libtpu (installed by the test extra for the aot tool), which would print TPU
worker-hostname errors first (unispeech_jax/platforms.py)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from unispeech_jax import platforms

PROGRAM = (
    "from unispeech_jax import platforms; platforms.skip_absent_accelerators(); "
    "import jax; print(jax.default_backend())"
)


def test_no_tpu_probe_where_only_the_cpu_is_possible():
    if importlib.util.find_spec("libtpu") is None or not platforms.only_cpu_possible():
        pytest.skip("needs libtpu installed on a machine without TPU chips or GPU plugins")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.split() == ["cpu"], out.stderr[-2000:]
    assert "TPU" not in out.stderr and "libtpu" not in out.stderr, out.stderr[-2000:]
