"""Sharding strategies on 8 fake CPU devices: data parallel, FSDP, FSDP with data, and
data × fsdp × tensor each give the 1-device steps' losses, gradient norms and, after the
sharded optimizer updates, parameters; FSDP divides the per-device bytes of parameters and
optimizer state; checkpoint hashes do not depend on the layout. SpeechT5's joint steps
likewise."""

import json
import os
import pathlib
import subprocess
import sys

import micro
import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
# Upper bounds on the fullest device's share of a replica's parameter / optimizer-state bytes.
FSDP8 = 0.3  # fsdp=8
FSDP2 = 0.65  # fsdp=2 (4x2x1, and 2x2x2 where tensor splits some of the rest again)


def run_on_8_devices(family):
    """multidevice_step.py's JSON: {mesh: {metrics (per step), param_bytes, opt_bytes,
    params_errors, same_checksums}}."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, str(HERE / "multidevice_step.py"), str(HERE), family],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def unispeech_meshes(tiny_corpus_env):
    return run_on_8_devices("unispeech")


def test_meshes_match_single_device_and_fsdp_shrinks_state(unispeech_meshes):
    results = dict(unispeech_meshes)
    single = results.pop("1")
    assert len(single["metrics"]) == 3
    for mesh, r in results.items():
        for step, (metrics, one) in enumerate(zip(r["metrics"], single["metrics"])):
            for key in ("loss", "grad_norm", "contrastive", "ctc"):
                np.testing.assert_allclose(
                    metrics[key], one[key], rtol=2e-5, err_msg=(mesh, step, key)
                )
        assert max(r["params_errors"].values()) < micro.PARAMS_RTOL, (mesh, r["params_errors"])
        assert r["same_checksums"], mesh
    # Fullest device's bytes of params and of optimizer state, relative to a whole replica.
    ratios = {
        m: (r["param_bytes"] / single["param_bytes"], r["opt_bytes"] / single["opt_bytes"])
        for m, r in results.items()
    }
    assert ratios["8x1x1"] == (1.0, 1.0), ratios  # data parallel replicates
    # fsdp=8 splits the model dimension of every large array 8 ways; biases, norms and the
    # codebook stay whole, hence not exactly 1/8.
    assert max(ratios["1x8x1"]) < FSDP8, ratios
    assert max(ratios["4x2x1"]) < FSDP2, ratios
    assert max(ratios["2x2x2"]) < FSDP2, ratios  # tensor splits further what fsdp=2 left


def test_speecht5_joint_steps_on_fsdp_and_tensor_meshes_match_single_device(tiny_corpus_env):
    """A speech step and a text step, the second from the state the first left, on data=4 x
    fsdp=2 and on data=2 x fsdp=2 x tensor=2 (heads and FFN units split over `tensor`)."""
    results = run_on_8_devices("speecht5")
    single = results.pop("1")
    assert sorted(results) == ["2x2x2", "4x2x1"]
    for mesh, multi in results.items():
        for one, eight in zip(single["metrics"], multi["metrics"], strict=True):
            kind = "text" if "text/mle" in one else "speech"
            parts = ("mle", "diversity") if kind == "text" else ("mlm", "l1", "bce", "diversity")
            for key in ("loss", "grad_norm", *(f"{kind}/{p}" for p in parts)):
                np.testing.assert_allclose(eight[key], one[key], rtol=2e-5, err_msg=(mesh, key))
        assert max(multi["params_errors"].values()) < micro.PARAMS_RTOL, multi["params_errors"]
        assert multi["same_checksums"], mesh
        assert multi["param_bytes"] < 0.6 * single["param_bytes"], results
    # tensor splits further what fsdp=2 left
    assert results["2x2x2"]["param_bytes"] < results["4x2x1"]["param_bytes"], results
