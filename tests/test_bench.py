"""bench/: the load filter's bookkeeping, and step_vs_hf.py end to end on its cheapest cases
(tiny inference; the SpeechT5 ASR and TTS training steps and greedy generation at the micro
size; 1 s of audio, one timed step per side) — the table prints and its numbers are finite and
positive. The full benchmark is not a test: bench/RESULTS.md and docs/results/ have its figures."""

import json
import math
import os
import pathlib
import subprocess
import sys
import time

import hf_deps

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import timing  # noqa: E402


def test_time_steps_keeps_clean_steps_and_flags_loaded_runs():
    clean = timing.time_steps(
        lambda: time.sleep(0.01), warmup=1, repeats=3, max_steps=5, max_foreign=1e9
    )
    assert len(clean["times"]) == 3 and clean["dropped"] == 0 and not clean["loaded"]
    assert 0.01 <= clean["min"] <= clean["median"] <= clean["max"] and clean["page_faults"] >= 0
    # Every step counts as loaded: all max_steps are kept, flagged, and counted as dropped.
    loaded = timing.time_steps(lambda: None, warmup=0, repeats=2, max_steps=4, max_foreign=-1.0)
    assert loaded["loaded"] and len(loaded["times"]) == 4 and loaded["dropped"] == 4


def test_rounds_pool_their_clean_steps():
    import step_vs_hf

    rows = [
        dict(times=[3.0, 3.2], median=3.1, min=3.0, max=3.2, dropped=1, loaded=False, compile_s=c)
        for c in (10.0, 11.0)
    ]
    rows.append(
        dict(times=[5.0], median=5.0, min=5.0, max=5.0, dropped=2, loaded=True, compile_s=12.0)
    )
    pooled = step_vs_hf.pool_rounds(rows)
    assert pooled["times"] == [3.0, 3.2, 3.0, 3.2, 5.0] and pooled["median"] == 3.2
    assert (pooled["min"], pooled["max"], pooled["dropped"], pooled["loaded"]) == (
        3.0,
        5.0,
        4,
        True,
    )
    assert pooled["rounds"] == [3.1, 3.1, 5.0] and pooled["compile_s"] == 11.0  # the middle round's
    assert step_vs_hf.pool_rounds(rows[:1]) is rows[0]


def test_step_vs_hf_prints_one_table(tmp_path):
    hf_deps.load("torch")
    hf_deps.load("transformers")
    out = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "step_vs_hf.py"),
            "--sizes",
            "tiny",
            "--cases",
            "infer",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--max-steps",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,  # a bound on a hang, not on speed: the host is shared
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| size | case | side |") for line in lines)
    assert any("ours with GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in line for line in lines)
    assert [
        line.split("|")[3].strip() for line in lines if line.startswith("| tiny | infer |")
    ] == ["ours", "hf"]
    results = json.loads(out.read_text())
    assert all(v > 0 for v in results["ceilings"].values())
    by_side = {r["side"]: r for r in results["results"]}
    for r in by_side.values():
        assert (
            math.isfinite(r["median"])
            and r["median"] > 0
            and r["flops"] > 0
            and r["peak_rss_mb"] > 0
        )
        assert r["page_faults"] >= 0
    ours = by_side["ours"]
    assert ours["compile_s"] > 0 and ours["recompiles"] == 0
    # Analytic FLOPs count matmuls and convs only; XLA's count must be in the same range.
    assert 0.5 < ours["xla_flops"] / ours["flops"] < 1.5


def test_speecht5_cases_at_micro_size():
    """The SpeechT5 cases at the micro size, in this process (a worker process per side would
    spend most of the time importing torch and JAX): both sides build from one HF init, the HF
    steps run, our analytic FLOPs are positive; our greedy step compiles and runs (our
    training step is `step.make_train_step`, run by tests/test_finetune_speecht5.py; compiling
    it here too would take the test past 30 s)."""
    hf_deps.load("torch")
    hf_deps.load("transformers")
    import cases
    import hf_steps
    import our_steps

    for name in ("st5_asr", "st5_tts", "st5_greedy"):
        case = cases.CASES[name]
        hf_model = hf_steps.build(case, "micro")
        config = hf_model.config
        batch = cases.make_batch(
            case,
            2,
            1.0,
            config.vocab_size,
            mel_bins=config.num_mel_bins,
            speaker_dim=config.speaker_embedding_dim,
        )
        model_cfg, module, variables = our_steps.build(case, hf_model, {})
        assert our_steps.analytic_flops(case, model_cfg, batch, config.vocab_size) > 0
        if not case.train:
            step, facts = our_steps.make_step(case, model_cfg, module, variables, batch)
            step()
            assert facts["compile_s"] > 0
        hf_steps.make_step(case, hf_model, batch)()


def test_conv_vs_torch_prints_every_layer(capsys):
    hf_deps.load("torch")
    import conv_vs_torch

    conv_vs_torch.main(["--channels", "8", "--samples", "4000", "--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")][1:]
    assert [int(r[0]) for r in rows] == list(range(7))
    for r in rows:  # milliseconds to 0.1: a layer this small may print 0.0
        times = [float(v) for v in r[5:11] if v.strip() != "–"]
        assert len(times) == (4 if r[0].strip() == "0" else 6) and all(
            math.isfinite(t) and t >= 0 for t in times
        )
    assert "all layers, forward + both gradients: XLA" in out
