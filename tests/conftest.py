"""Shared fixtures: a session-wide corpus cache and a tiny eSpeak NG corpus in it."""

import os

import pytest

# The tests check values, not speed: LLVM's optimisation passes are half of every XLA CPU
# compilation of the micro models (measured 15.6 s -> 7.2 s for one train step's builds) and
# buy nothing at these sizes; XLA's newer fusion emitters take twice as long to compile as
# the classic ones (micro UniSpeech init + train step 13.4 -> 6.3 CPU-s, medians of 3; the
# same loss to 7 digits, 10 steps 0.75 vs 0.81 CPU-s). Set before any test module imports JAX;
# subprocesses inherit it, except the kill -9 test's runs and its reference
# (micro.subprocess_env(xla_default=True)): bit-exact resume is checked as users run.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


@pytest.fixture(scope="session")
def tiny_corpus_env(tmp_path_factory):
    """Points $UNISPEECH_JAX_CACHE at a session temp dir (in os.environ: subprocesses see it)."""
    cache = tmp_path_factory.mktemp("unispeech_jax_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("UNISPEECH_JAX_CACHE", str(cache))
    yield cache
    patch.undo()


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_env):
    """Path of ensure_corpus(hours=0.02, seed=0), built once per test session."""
    from unispeech_jax.data.corpus import ensure_corpus

    return ensure_corpus(hours=0.02, seed=0)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    """A directory all pytest-xdist workers of this session share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def compile_cache(shared_dir):
    """JAX's persistent compilation cache for train subprocesses (see micro.subprocess_env)."""
    path = shared_dir / "jax_compile_cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def in_process_compile_cache(compile_cache):
    """The same persistent cache for this process's own jit compilations: every test that
    trains the micro config (in process or in a subprocess) compiles it once per session."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(compile_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    yield
    jax.config.update("jax_compilation_cache_dir", None)


@pytest.fixture(scope="session")
def reference_run(tiny_corpus, shared_dir, compile_cache):
    """{step: loss} of one uninterrupted single-process run of micro.REFERENCE_ARGS.

    Computed once per session (a lock file serialises the xdist workers; the second reads the
    first's result), as a subprocess so that it fills the compilation cache for the others.
    Depends on `tiny_corpus` so that this worker's train subprocesses find the corpus built.
    """
    import fcntl
    import json
    import subprocess

    import micro

    result = shared_dir / "reference_losses.json"
    with open(shared_dir / "reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            workdir = shared_dir / "reference_run"
            out = subprocess.run(
                micro.train_command(workdir, *micro.REFERENCE_ARGS),
                env=micro.subprocess_env(compile_cache, xla_default=True),
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert out.returncode == 0, out.stderr[-4000:]
            result.write_text(json.dumps(micro.train_losses(workdir)))
    return {int(k): v for k, v in json.loads(result.read_text()).items()}


@pytest.fixture(scope="session")
def asr_workdir(tiny_corpus, tmp_path_factory):
    """A micro SpeechT5 ASR model (configs/speecht5_asr_tiny.py, CTC head) trained 3 steps:
    its transcripts are noise, but real decoding."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("asr")
    train.train(test_finetune_configs.task_micro_config("asr_tiny"), workdir)
    return workdir


@pytest.fixture(scope="session")
def tts_workdir(tiny_corpus, tmp_path_factory):
    """A micro SpeechT5 TTS model (configs/speecht5_tts_tiny.py) with a table of the tiny
    corpus's speakers, trained 3 steps."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("tts")
    train.train(test_finetune_configs.task_micro_config("tts_tiny"), workdir)
    return workdir


@pytest.fixture(scope="session")
def st_workdir(tiny_corpus, tmp_path_factory):
    """A micro SpeechT5 speech translation model (configs/speecht5_st_tiny.py on the committed
    verse pairs) trained 3 steps."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("st")
    config = test_finetune_configs.task_micro_config(
        "st_tiny", **test_finetune_configs.TASK_DATA["st_tiny"]
    )
    train.train(config, workdir)
    return workdir


@pytest.fixture(scope="session")
def sid_workdir(tiny_corpus, tmp_path_factory):
    """A micro SpeechT5 speaker identification model (configs/speecht5_sid_tiny.py, a class
    per training speaker of the tiny corpus) trained 3 steps."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("sid")
    train.train(test_finetune_configs.task_micro_config("sid_tiny"), workdir)
    return workdir


@pytest.fixture(scope="session")
def vc_workdir(tiny_corpus_env, tmp_path_factory):
    """A micro SpeechT5 VC model (configs/speecht5_vc_tiny.py: a corpus of two voices per
    sentence, a table of its training speakers) trained 3 steps."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("vc")
    train.train(test_finetune_configs.task_micro_config("vc_tiny"), workdir)
    return workdir


@pytest.fixture(scope="session")
def se_workdir(tiny_corpus_env, tmp_path_factory):
    """A micro SpeechT5 SE model (configs/speecht5_se_tiny.py: noisy, reverberant copies,
    no speaker input) trained 3 steps."""
    import test_finetune_configs

    from unispeech_jax import train

    workdir = tmp_path_factory.mktemp("se")
    train.train(test_finetune_configs.task_micro_config("se_tiny"), workdir)
    return workdir
