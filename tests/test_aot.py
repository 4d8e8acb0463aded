"""unispeech_jax.aot: the train step compiled for a TPU topology on this CPU host (libtpu),
its memory verdict, the collectives read from compiled HLO, and the batch shapes it compiles
for being the ones the input pipeline makes."""

import json
import subprocess
import sys
import types

import jax
import micro
import numpy as np
import pytest
import test_train_speecht5
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from unispeech_jax import aot
from unispeech_jax.data import pipeline

# A compiled module in the shape XLA prints it: a scanned layer loop of 12 trips whose body
# gathers a weight asynchronously and scatters its gradient, an all-reduce of a tuple after it.
HLO = """HloModule jit_step, entry_computation_layout={(f32[8,128]{1,0})->f32[]}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%body.1 (p: (s32[], f32[8,128])) -> (s32[], f32[8,128]) {
  %p = (s32[], f32[8,128]{1,0}) parameter(0)
  %w = f32[2,128]{1,0} get-tuple-element(%p), index=1
  %ags = (f32[2,128]{1,0}, f32[8,128]{1,0}) all-gather-start(%w), replica_groups={{0,1,2,3}}, dimensions={0}
  %agd = f32[8,128]{1,0} all-gather-done(%ags)
  %rs = bf16[2,128]{1,0} reduce-scatter(%agd), replica_groups={{0,1,2,3}}, dimensions={0}, to_apply=%add
  ROOT %t = (s32[], f32[8,128]{1,0}) tuple(%i, %agd)
}

%cond.1 (p: (s32[], f32[8,128])) -> pred[] {
  %n = s32[]{:T(128)} constant(12)
  %p = (s32[], f32[8,128]{1,0}) parameter(0)
  %i = s32[]{:T(128)} get-tuple-element(%p), index=0
  ROOT %lt = pred[]{:T(512)} compare(%i, %n), direction=LT
}

ENTRY %main.2 (x: f32[8,128]) -> f32[] {
  %x = f32[8,128]{1,0} parameter(0)
  %loop = (s32[], f32[8,128]{1,0}) while(%init), condition=%cond.1, body=%body.1
  %ar = (f32[], f32[4]{0}) all-reduce(%s, %v), replica_groups={{0,1,2,3}}, to_apply=%add
  ROOT %r = f32[] get-tuple-element(%ar), index=0
}
"""


def test_collectives_count_loop_trips_and_async_pairs_once():
    found = aot.collectives(HLO)
    assert found["all-gather"] == {"ops": 1, "per_step": 12, "bytes": 12 * 8 * 128 * 4}
    assert found["reduce-scatter"] == {"ops": 1, "per_step": 12, "bytes": 12 * 2 * 128 * 2}
    assert found["all-reduce"] == {"ops": 1, "per_step": 1, "bytes": 4 + 16}
    assert found["all-to-all"]["ops"] == found["collective-permute"]["ops"] == 0


def test_memory_verdict_counts_donated_state_once():
    chip = aot.CHIPS["TPU v5 lite"]
    gib = aot.GIB
    # 2 GiB state donated (aliased to the output) + 1 GiB batch + 12 GiB temporaries: fits.
    memory = types.SimpleNamespace(
        argument_size_in_bytes=3 * gib,
        output_size_in_bytes=2 * gib,
        alias_size_in_bytes=2 * gib,
        temp_size_in_bytes=12 * gib,
        generated_code_size_in_bytes=0,
    )
    fits = aot.memory_report(memory, 2 * gib, chip.hbm_bytes)
    assert fits["total_bytes"] == 15 * gib and fits["fits"] and fits["headroom_bytes"] == gib
    memory.temp_size_in_bytes = 14 * gib
    over = aot.memory_report(memory, 2 * gib, chip.hbm_bytes)
    assert not over["fits"] and over["headroom_bytes"] == -gib
    # XLA's refusals: "Used X of Y" counts everything; "temporaries (X)" needs the arguments.
    used = aot.out_of_memory_report("Used 20.5G of 15.75G hbm. Exceeded by 4.75G", gib, 16 * gib)
    assert used["total_bytes"] == 20.5 * gib and used["headroom_bytes"] == -4.75 * gib
    temps = "required for HLO temporaries (26.86G) exceeds available HBM (15.75G)."
    temps = aot.out_of_memory_report(temps, gib, 16 * gib)
    assert temps["total_bytes"] == pytest.approx(27.86 * gib) and not temps["fits"]


def test_roofline_takes_the_slower_of_compute_and_memory():
    chip = aot.Chip("x", 16 * aot.GIB, 100e12, 1e12)
    r = aot.roofline(flops=50e12, bytes_accessed=0.2e12, model_flops=40e12, chip=chip, eff=0.5)
    assert r["bound_s"] == pytest.approx(0.5) and r["bound_by"] == "compute"
    assert r["projected_step_s"] == pytest.approx(1.0)
    assert r["projected_mfu"] == pytest.approx(0.4)
    r = aot.roofline(flops=1e12, bytes_accessed=2e12, model_flops=1e12, chip=chip, eff=1.0)
    assert r["bound_s"] == pytest.approx(2.0) and r["bound_by"] == "HBM bandwidth"
    # XLA counted one layer of a scanned stack: the model's FLOPs set the compute time.
    r = aot.roofline(flops=1e12, bytes_accessed=0.1e12, model_flops=12e12, chip=chip, eff=1.0)
    assert r["compute_s"] == pytest.approx(0.12) and r["projected_mfu"] == pytest.approx(1.0)
    # XLA's GPU compile-only client counts nothing: the model's compute alone, no HBM time.
    r = aot.roofline(flops=None, bytes_accessed=None, model_flops=12e12, chip=chip, eff=0.5)
    assert r["bound_s"] == pytest.approx(0.12) and r["memory_s"] is None
    assert r["bound_by"] == "compute" and r["projected_mfu"] == pytest.approx(0.5)


def test_a_parameter_that_does_not_split_over_the_mesh_is_named():
    """SpeechT5's 80 mel bins over fsdp=64: jit refuses such a layout, so the tool says which
    array and which mesh axes, before compiling."""
    devices = aot.topology_devices("v5e:4x4")
    mesh = jax.make_mesh((16,), ("fsdp",), devices=devices)
    fine = jax.ShapeDtypeStruct((64, 3), np.float32, sharding=NamedSharding(mesh, P("fsdp")))
    mel = jax.ShapeDtypeStruct((80, 3), np.float32, sharding=NamedSharding(mesh, P(None)))
    bad = jax.ShapeDtypeStruct((90, 3), np.float32, sharding=NamedSharding(mesh, P("fsdp")))
    aot.check_divisible({"a": fine, "b": mel}, {"fsdp": 16})
    with pytest.raises(aot.config_lib.ConfigError, match=r"post/bias \(90, 3\): its axis of 90"):
        aot.check_divisible({"a": fine, "post": {"bias": bad}}, {"fsdp": 16})


def test_buckets_compile_one_at_a_time(tiny_corpus, monkeypatch):
    """The CLI prints each bucket as it compiles (a large config's take minutes each): the
    config is checked at once, and a bucket is compiled only when the iterator reaches it."""
    compiled = []
    monkeypatch.setattr(aot, "_compile_shape", lambda *a: compiled.append(a[4]) or a[4])
    devices = aot.topology_devices("v5e:2x2")
    config = micro.micro_config(**{"data.batch_multiple": 4})
    shapes = aot.compile_step(config, devices)
    assert compiled == []
    first = next(shapes)
    assert compiled == [first] and first["audio"][0] == (4, 16_000)
    assert [s["audio"][0][1] for s in shapes] == [32_000] and len(compiled) == 2
    with pytest.raises(aot.config_lib.ConfigError, match="no such batch shape"):
        aot.compile_step(config, devices, widths={8000})  # before any compile


def test_a_v4_slice_has_one_device_per_chip():
    """libtpu's default v4:2x2x1 has a device per TensorCore (8), which jax.make_mesh refuses;
    the tool asks for the megacore layout JAX runs on v4: 4 chips, each a 32 GiB device."""
    devices = aot.topology_devices("v4:2x2x1")
    assert len(devices) == 4 and {d.core_on_chip for d in devices} == {0}
    assert aot.chip_of(devices).hbm_bytes == 32 * aot.GIB
    assert jax.make_mesh((4,), ("data",), devices=devices).size == 4


def test_missing_libtpu_is_one_line_naming_the_pin(monkeypatch):
    real = aot.importlib.util.find_spec
    monkeypatch.setattr(
        aot.importlib.util, "find_spec", lambda name: None if name == "libtpu" else real(name)
    )
    with pytest.raises(aot.AotError, match=r"libtpu is not installed; pip install 'libtpu=="):
        aot.topology_devices("v5e:2x2")


def test_missing_cuda_plugin_is_one_line_naming_the_wheels(monkeypatch):
    real = aot.importlib.util.find_spec
    monkeypatch.setattr(
        aot.importlib.util,
        "find_spec",
        lambda name: None if name.startswith("jax_plugins") else real(name),
    )
    with pytest.raises(aot.AotError, match=r"CUDA plugin is not installed; pip install 'jax-cuda"):
        aot.topology_devices("h100:1x1x8")


def test_gpu_target_names_its_chip():
    """The compile target of an H100 carries the chip's SMs, memory and device kind (the kind
    is how the report finds the chip's figures again)."""
    kind = aot.GPUS["h100"]
    text = aot.gpu_target_config(aot.CHIPS[kind], kind)
    assert "core_count: 132" in text and f"device_memory_size: {84_929_347_584}" in text
    assert f'device_description_str: "{kind}"' in text and "major: 9 }" in text


def _global(batch):
    return {k: (v.shape, v.dtype) for k, v in batch.items()}


def test_batch_shapes_are_the_pipelines(tiny_corpus):
    """Every batch make_train_iter yields has one of train_batch_shapes' shapes (keys, dtypes,
    global sizes): UniSpeech's speech buckets, SpeechT5's speech and text buckets."""
    for config in (micro.micro_config(), test_train_speecht5.micro_config()):
        shapes = [
            {k: (tuple(s), np.dtype(d)) for k, (s, d) in b.items()}
            for b in pipeline.train_batch_shapes(config)
        ]
        it = pipeline.make_train_iter(config, seed=0)
        seen = [_global(next(it)) for _ in range(8)]
        it.close()
        assert all(s in shapes for s in seen), (seen, shapes)
    assert len({tuple(sorted(s)) for s in seen}) == 2  # SpeechT5: speech and text batches


def _aot(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "unispeech_jax.aot", "--config", "tests/micro.py", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_config_that_does_not_divide_the_topology_is_one_line():
    repo = micro.REPO
    out = _aot("--topology=v5e:2x2", "--config.mesh.shape.fsdp=3", cwd=repo)
    assert out.returncode == 2, out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("ConfigError: topology v5e:2x2 (4 devices): mesh.shape"), error
    assert "do not divide the 4 available devices" in error
    out = _aot("--topology=v5e:2x2", cwd=repo)  # the micro batch_multiple is 2
    assert out.returncode == 2
    assert "batch_multiple=2 must be a multiple of the batch-sharded mesh axes" in out.stderr
    out = _aot("--topology=v9:2x2", cwd=repo)
    assert out.returncode == 2 and "AotError: --topology='v9:2x2'" in out.stderr


@pytest.mark.slow
def test_micro_step_compiles_for_a_v5e_slice(tiny_corpus_env, tmp_path):
    """The micro config's step for a 2x2 v5e slice, data parallel (one bucket: ~30 s of TPU
    compiling on one core): the report's bytes, FLOPs and collectives."""
    out, r = _micro_on_v5e(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "FITS (" in out.stdout and "every batch shape fits" in out.stdout
    assert r["batch"]["audio"] == [4, 16_000] and r["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    assert r["batch_bytes"] == 16_000 * (4 + 1) + 256 * (4 + 1) + 4 + 4  # one row per chip
    # Data parallel: the parameters are replicated and their gradients all-reduced.
    params = sum(np.prod(s) for s in _param_shapes()) * 4
    assert r["param_bytes"] == params and r["opt_state_bytes"] >= 2 * params
    assert r["collectives"]["all-reduce"]["bytes"] >= 0.9 * params
    assert r["collectives"]["all-gather"]["ops"] == 0
    m = r["memory"]
    assert m["fits"] and m["total_bytes"] >= m["state_bytes"] + m["temp_bytes"]
    assert r["flops"] > r["model_flops"] > 0 and r["roofline"]["bound_s"] > 0


@pytest.mark.slow
def test_step_that_cannot_fit_is_reported_with_xlas_numbers(tiny_corpus_env, tmp_path):
    """Micro with 2 x 33.5 M FFN units: 16 GiB of parameters per v5e chip (16 GiB of HBM).
    XLA refuses to compile it (~10 s); the tool says by how much it does not fit, exit 1."""
    out, r = _micro_on_v5e(tmp_path, f"--config.model.intermediate_size={2**25}")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "DOES NOT FIT (over by" in out.stdout and "NOT EVERY BATCH SHAPE FITS" in out.stdout
    assert r["param_bytes"] > 16 * aot.GIB
    m = r["memory"]
    assert not m["fits"] and "RESOURCE_EXHAUSTED" in m["error"]
    assert m["total_bytes"] > r["param_bytes"] + r["opt_state_bytes"] > m["hbm_bytes"]
    assert m["headroom_bytes"] < 0


@pytest.mark.slow
def test_micro_step_compiles_for_four_h100s(tiny_corpus_env, tmp_path):
    """With jax[cuda12]'s plugin (no GPU, no CUDA libraries): the micro step for one host of
    4 H100s, data parallel (~2-4 min of GPU compiling on this CPU host). XLA's GPU
    compile-only client reports memory but no cost analysis."""
    pytest.importorskip("jax_plugins.xla_cuda12")
    out, r = _micro_on_v5e(tmp_path, topology="h100:1x1x4")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "of 79.10 GiB HBM (h100): FITS" in out.stdout and "XLA gave no cost" in out.stdout
    assert r["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1} and r["flops"] is None
    m = r["memory"]
    assert m["fits"] and m["temp_bytes"] > 0 and m["alias_bytes"] == r["state_bytes"]
    assert r["collectives"]["all-reduce"]["bytes"] >= 0.9 * r["param_bytes"]


def _micro_on_v5e(tmp_path, *overrides, topology="v5e:2x2"):
    """The tool on the micro config's 1 s bucket for a 4-chip slice (default a 2x2 v5e),
    data parallel: (the finished process, its one JSON report)."""
    report = tmp_path / "aot.json"
    out = _aot(
        f"--topology={topology}",
        "--config.data.batch_multiple=4",
        "--buckets=16000",
        f"--json={report}",
        *overrides,
        cwd=micro.REPO,
    )
    reports = json.loads(report.read_text())["reports"] if report.exists() else [None]
    return out, reports[0]


def _param_shapes():
    import jax

    from unispeech_jax import models

    config = micro.micro_config()
    family = models.get("unispeech")
    module = family.build(config.model, family.vocab_size(config))
    params = jax.eval_shape(lambda: family.init_params(module, jax.random.key(0), None, unbox=True))
    return [x.shape for x in jax.tree.leaves(params)]
