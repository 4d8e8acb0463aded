"""Damaged checkpoints: each kind of damage is named in one line with its step, the newest
checkpoint that restores cleanly is used instead (train and evaluate), and the damaged one is
kept; bytes flipped in place are caught by the checksums written at save time.

One micro run (tests/micro.py: checkpoints at steps 2, 4 and 6) is trained per module; each
test damages a copy.
"""

import asyncio
import gc
import logging
import re
import shutil
import subprocess

import jax
import jax.numpy as jnp
import micro
import numpy as np
import pytest
from orbax.checkpoint._src import asyncio_utils
from test_faults import poison_step

from unispeech_jax import checkpoint, evaluate, train


@pytest.fixture(scope="module")
def trained(tiny_corpus_env, tmp_path_factory):
    work = tmp_path_factory.mktemp("trained") / "w"
    train.train(micro.micro_config(), work)
    return work


@pytest.fixture
def work(trained, tmp_path):
    """A copy of the trained workdir that the test may damage."""
    return shutil.copytree(trained, tmp_path / "w")


def largest_array_file(step_dir):
    files = (step_dir / "state").glob("ocdbt.process_*/d/*")
    return max(files, key=lambda p: p.stat().st_size)


def truncate(step_dir):
    f = largest_array_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def edit_position(step_dir):
    """Another plausible data position, the file's size unchanged."""
    f = step_dir / "data" / "metadata"
    text = f.read_text()
    edited = re.sub(r'"batch": (\d)', lambda m: f'"batch": {(int(m[1]) + 1) % 10}', text)
    assert edited != text and len(edited) == len(text)
    f.write_text(edited)


DAMAGE = {
    "truncated array file": (truncate, r"the arrays \(state/\) cannot be read \(.*OUT_OF_RANGE"),
    "garbage metadata": (
        lambda d: (d / "state" / "_METADATA").write_text("garbage{"),
        r"the arrays' metadata \(state/\) cannot be read \(JSONDecodeError",
    ),
    "missing manifest": (
        lambda d: (d / "state" / "manifest.ocdbt").unlink(),
        r"the arrays' metadata \(state/\) cannot be read \(.*NOT_FOUND",
    ),
    "broken data position": (
        lambda d: (d / "data" / "metadata").write_text('{"position": '),
        r"the data position \(data/\) cannot be read \(JSONDecodeError",
    ),
    "edited data position": (edit_position, r"the data position \(data/\) differs"),
}


def warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "unispeech_jax"
    ]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_newest_checkpoint_falls_back_and_is_kept(work, kind, caplog):
    """A resumed run names step 6 and the damage in one line, continues from step 4 with
    the uninterrupted run's losses, and keeps the damaged files as 6.damaged."""
    damage, message = DAMAGE[kind]
    before = micro.train_losses(work)
    damage(work / "checkpoints" / "6")
    shutil.copytree(work / "checkpoints" / "6", work / "damaged_copy")
    with caplog.at_level(logging.WARNING):
        train.train(micro.micro_config(), work)
    first, second = warnings(caplog)[:2]
    assert re.fullmatch(rf"checkpoint step 6 in \S+ is damaged: {message}.*", first), first
    assert "\n" not in first and len(first) < 600 and "tensorstore_spec" not in first
    assert second.startswith("restored step 4, the newest checkpoint in ")
    assert micro.train_losses(work) == before  # steps 5 and 6 trained again, bit for bit
    kept = work / "checkpoints" / "6.damaged"
    for f in (work / "damaged_copy").rglob("*"):
        assert (
            f.is_dir()
            or f.read_bytes() == (kept / f.relative_to(work / "damaged_copy")).read_bytes()
        )
    with checkpoint.Checkpoints(work) as ckpt:
        assert ckpt.all_steps() == [2, 4, 6]
        ckpt.restore(6)  # written again by the resumed run, verified


def test_every_flipped_byte_is_caught(work):
    """Bytes flipped in place (same size) in the largest array file: orbax reads most of
    them without complaint; the checksums catch every flip that changes a value."""
    f = largest_array_file(work / "checkpoints" / "6")
    clean = f.read_bytes()
    with checkpoint.Checkpoints(work) as ckpt:
        saved = ckpt.restore(6)[0]
    reasons = []
    for offset in np.linspace(0, len(clean) - 1, 9).astype(int):
        flipped = bytearray(clean)
        flipped[offset] ^= 0x10
        f.write_bytes(bytes(flipped))
        with checkpoint.Checkpoints(work) as ckpt:  # a new process's reads: nothing cached
            try:
                state = ckpt.restore(6)[0]
            except checkpoint.DamagedCheckpoint as e:
                reasons.append(str(e))
            else:  # a byte no value depends on (e.g. unused padding): the same arrays
                jax.tree.map(np.testing.assert_array_equal, state, saved)
    assert sum("checksum mismatch" in r for r in reasons) >= 5, reasons


def test_nan_message_names_only_a_verified_checkpoint(work, monkeypatch):
    """The newest checkpoint's data position was edited: the resumed run goes on from step 4,
    and when a later step turns NaN it names step 4, not the damaged step 6."""
    edit_position(work / "checkpoints" / "6")
    poison_step(monkeypatch, 5)
    config = micro.micro_config(log_every=100, checkpoint_every=100)
    with pytest.raises(FloatingPointError, match="last good checkpoint is step 4 "):
        train.train(config, work)


def test_checkpoint_without_checksums_restores_with_a_warning(work, caplog):
    """Checkpoints written before the checksums existed still restore, flagged unverified."""
    shutil.rmtree(work / "checkpoints" / "6" / "checksums")
    with checkpoint.Checkpoints(work) as ckpt, caplog.at_level(logging.WARNING):
        assert ckpt.restore_chosen()[0] == 6
    assert warnings(caplog) == [
        "checkpoint step 6 has no checksums (written before they existed): restored unverified"
    ]


def test_evaluate_falls_back_and_refuses_a_damaged_chosen_step(work, caplog):
    truncate(work / "checkpoints" / "6")
    with caplog.at_level(logging.WARNING):
        result = evaluate.evaluate_workdir(work, "test", max_batches=1)
    assert result["step"] == 4
    assert warnings(caplog)[0].startswith("checkpoint step 6 in ")
    assert (work / "checkpoints" / "6").is_dir()  # a reader moves nothing
    with pytest.raises(checkpoint.DamagedCheckpoint, match="step 6 .* cannot be read"):
        evaluate.evaluate_workdir(work, "test", max_batches=1, step=6)


def cli(module, *args, env):
    return subprocess.run(
        [micro.sys.executable, "-m", f"unispeech_jax.{module}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_stops_in_one_line_when_no_checkpoint_restores(work, compile_cache):
    """Train with every checkpoint damaged: exit 2, one line, nothing moved or deleted;
    evaluate of a damaged step likewise."""
    for step in (2, 4, 6):
        truncate(work / "checkpoints" / str(step))
    env = micro.subprocess_env(compile_cache)
    out = cli("train", *micro.train_args(work), env=env)
    micro.assert_one_error_line(out, r"CheckpointError: no checkpoint in \S+ restores cleanly")
    assert len(re.findall(r"checkpoint step [246] in \S+ is damaged", out.stderr)) == 3
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["2", "4", "6"]

    out = cli("evaluate", "--workdir", str(work), "--step=6", env=env)
    micro.assert_one_error_line(out, r"DamagedCheckpoint: checkpoint step 6 in \S+ is damaged")


def test_array_hash_sees_every_element_and_its_position():
    x = jnp.arange(24, dtype=jnp.float32).reshape(2, 3, 4)
    base = int(checkpoint._array_hash(x))
    changed = {
        int(checkpoint._array_hash(x.at[i, j, k].add(0.5))) for i, j, k in np.ndindex(x.shape)
    }
    assert len(changed) == x.size and base not in changed
    assert int(checkpoint._array_hash(x.reshape(4, 3, 2))) == base  # bytes and order, not shape
    swapped = x.at[0, 0, 0].set(x[1, 2, 3]).at[1, 2, 3].set(x[0, 0, 0])
    assert int(checkpoint._array_hash(swapped)) != base
    for dtype in (jnp.bfloat16, jnp.int8, jnp.bool_, jnp.uint32):
        y = jnp.ones((3, 5), dtype)
        assert int(checkpoint._array_hash(y)) != int(
            checkpoint._array_hash(y.at[2, 4].set(jnp.zeros((), dtype)))
        )
    names = checkpoint.array_checksums({"a": {"b": x}, "c": (x, x[0])})
    assert list(names) == ["a/b", "c/0", "c/1"] and names["c/0"] == base
    assert all(type(h) is int for h in names.values())  # JSON-ready


def test_a_failed_restore_returns_after_all_its_reads(caplog):
    """Orbax's way of running a restore's reads (gathered on a loop it closes when the
    gather raises) with the first read failing at once: the others, one of them failing
    later inside its own gather, still run to their end before the error reaches us, so
    nothing is left to fail or log later."""
    ended = []

    async def read(name, delay, fails):
        await asyncio.sleep(delay)
        ended.append(name)
        if fails:
            raise ValueError(f"{name} damaged")

    async def restore():
        await asyncio.gather(
            read("a", 0, True),
            read("b", 0.05, False),
            asyncio.gather(read("c", 0.1, True), read("d", 0.01, False)),
        )

    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="a damaged"):
        with checkpoint.reads_settled():
            asyncio_utils.run_sync(restore())
    gc.collect()
    assert sorted(ended) == ["a", "b", "c", "d"]
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    assert type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy
