"""The user commands on tiny trained workdirs: `transcribe` (asr) and `synthesize` (tts), end to
end as subprocesses, their one-line errors, and the shared loader (unispeech_jax/inference.py)."""

import json
import subprocess
import sys

import micro
import numpy as np
import pytest
import soundfile as sf

from unispeech_jax import config as config_lib
from unispeech_jax import decoding, inference, metrics, synthesize, train, transcribe
from unispeech_jax.data import audio, sources
from unispeech_jax.models import unispeech


def _run(module, *args, compile_cache=None):
    return subprocess.run(
        [sys.executable, "-m", f"unispeech_jax.{module}", *map(str, args)],
        env=micro.subprocess_env(compile_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _wav(path, seconds, rate=16_000, channels=1, seed=0):
    x = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    sf.write(str(path), x.astype(np.float32), rate)
    return path


def test_transcribe_prints_one_line_per_file_in_order(asr_workdir, tmp_path, compile_cache):
    """Files of other rates and channel counts are read; the batch (longest first) and the
    one-at-a-time transcripts agree and come back in the order given."""
    files = [
        _wav(tmp_path / "a.wav", 1.0),
        _wav(tmp_path / "b.flac", 2.5, rate=22_050, channels=2, seed=1),
        _wav(tmp_path / "c.wav", 0.5, seed=2),
    ]
    out = _run("transcribe", "--workdir", asr_workdir, *files, compile_cache=compile_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]
    trained = inference.load(asr_workdir, task="asr")
    waves = [inference.read_audio_file(f) for f in files]
    assert waves[1].shape == (40_000,)
    one_at_a_time = [inference.transcribe(trained, [w])[0] for w in waves]
    assert [line.split("\t", 1)[1] for line in lines] == one_at_a_time


def test_transcribe_with_beam_search_and_ctc_prints_every_file(
    asr_workdir, tmp_path, compile_cache
):
    files = [_wav(tmp_path / "a.wav", 1.0), _wav(tmp_path / "b.wav", 1.5, seed=1)]
    args = ("--workdir", asr_workdir, "--beam", 3, "--ctc-weight", 0.3, "--length-alpha", 1.0)
    out = _run("transcribe", *args, *files, compile_cache=compile_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == [str(f) for f in files]


def test_transcribe_errors_are_one_line(asr_workdir, tmp_path, compile_cache):
    """Each user mistake is one error line, exit status 2 (the CLI), and the exception that
    carries that line (`transcribe.run`)."""
    good = _wav(tmp_path / "a.wav", 1.0)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    cli_cases = [
        (("--workdir", asr_workdir, good, broken), r"broken\.wav: cannot read audio"),
        (("--workdir", asr_workdir, "--beam", 0, good), r"--beam=0 must be >= 1"),
        ((good,), r"--workdir required"),
    ]
    for args, pattern in cli_cases:
        micro.assert_one_error_line(_run("transcribe", *args, compile_cache=compile_cache), pattern)

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), 16_000)
    not_workdir = tmp_path / "nothing_here"
    not_workdir.mkdir()
    cases = [
        ((asr_workdir, [good, tmp_path / "missing.wav"]), r"missing\.wav: cannot read"),
        ((asr_workdir, [empty]), r"empty\.wav: the file holds no audio"),
        ((asr_workdir, []), r"no audio files given"),
        ((tmp_path / "nope", [good]), r"workdir .*nope does not exist"),
        ((not_workdir, [good]), r"config\.json not found"),
    ]
    for (workdir, files), pattern in cases:
        with pytest.raises((inference.InputError, config_lib.ConfigError), match=pattern):
            transcribe.run(workdir, files)


def test_a_workdir_of_another_task_is_refused(asr_workdir):
    with pytest.raises(config_lib.ConfigError, match="trained for model.task 'asr'.*'tts'"):
        inference.load(asr_workdir, task="tts")


def test_synthesize_writes_speech_for_a_training_speaker(tts_workdir, tmp_path, compile_cache):
    trained = inference.load(tts_workdir, task="tts")
    name = sources.speaker_names(
        sources.resolve_data_dir(trained.config.data), trained.config.data
    )[1]
    out = tmp_path / "a.wav"
    args = ("--workdir", tts_workdir, "--text", "hello there", "--out", out, "--speaker", name)
    result = _run("synthesize", *args, compile_cache=compile_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    audio, rate = sf.read(str(out))
    assert rate == 16_000 and len(audio) > 0 and np.abs(audio).max() > 0
    assert result.stdout.startswith(f"{out}\t")


def test_synthesize_rows_do_not_depend_on_the_batch(tts_workdir):
    """A batch gives each text the log-mel it gets alone (same seed), the speakers' rows (and
    the mean voice for -1) as input; another speaker changes the output."""
    trained = inference.load(tts_workdir, task="tts")
    texts, speakers = ["hello there", "a longer sentence to speak"], [0, -1]
    batch = inference.synthesize(trained, texts, speakers)
    for text, speaker, mel in zip(texts, speakers, batch):
        (alone,) = inference.synthesize(trained, [text], [speaker])
        assert mel.shape[1] == 80 and len(mel) > 0
        np.testing.assert_allclose(mel, alone, atol=1e-5)
    (other,) = inference.synthesize(trained, texts[:1], [1])
    assert not np.allclose(other[: len(batch[0])], batch[0][: len(other)])


def test_synthesize_errors_are_one_line(tts_workdir, asr_workdir, tmp_path, compile_cache):
    out = tmp_path / "a.wav"
    micro.assert_one_error_line(
        _run("synthesize", "--workdir", tts_workdir, "--text", "  ", "--out", out),
        r"text '  ' is empty",
    )
    np.save(tmp_path / "x.npy", np.ones(8, np.float32))
    cases = [
        (dict(workdir=asr_workdir, text="hi"), r"trained for model.task 'asr'.*'tts'"),
        (dict(workdir=tts_workdir, text="hi", speaker="nobody"), r"'nobody' is not a training"),
        (dict(workdir=tts_workdir, text="hi", xvector=tmp_path / "x.npy"), r"without x-vectors"),
        (dict(workdir=tts_workdir, text="hi", xvector=tmp_path / "no.npy"), r"no\.npy: cannot"),
        (dict(workdir=tts_workdir, text="hi", vocoder=tmp_path), r"missing \(expected a Speech"),
        (dict(workdir=tts_workdir, text="hi", speaker="a", xvector="b"), r"not both"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises((inference.InputError, config_lib.ConfigError, OSError), match=pattern):
            synthesize.run(out=out, **kwargs)
    assert not out.exists()


def test_transcripts_skip_ids_past_the_text_model(asr_workdir, monkeypatch):
    """A decoder may emit the infilling-mask id (past the SentencePiece pieces, no text):
    it is left out instead of failing the decode."""
    trained = inference.load(asr_workdir, task="asr")
    mask = trained.sp.get_piece_size()
    monkeypatch.setattr(inference.decoding.speecht5, "recognize", lambda *a, **k: [[5, mask, 6]])
    wave = np.zeros(16_000, np.float32)
    assert inference.transcribe(trained, [wave]) == [trained.sp.decode([5, 6])]


def test_transcribe_a_unispeech_ctc_workdir(tiny_corpus, tmp_path):
    """A CTC model (the micro UniSpeech) transcribes into its phone labels: greedily (the best
    path of its CTC head, collapsed, as evaluate's PER reads it) or by CTC prefix beam search;
    joint CTC/attention weights make no sense for it and are refused."""
    workdir = tmp_path / "ctc"
    train.train(micro.micro_config(total_steps=2, eval_every=2), workdir)
    files = [_wav(tmp_path / "a.wav", 1.0), _wav(tmp_path / "b.wav", 0.6, seed=1)]
    trained = inference.load(workdir, task="asr")
    greedy = transcribe.run(workdir, files)
    wave = audio.normalize(inference.read_audio_file(files[0]))  # tiny.py normalises
    logits, valid = unispeech.predict_fn(
        trained.module,
        trained.variables["params"],
        {"audio": wave[None], "audio_mask": np.ones((1, len(wave)), bool)},
    )
    best_path = decoding.ctc_greedy(logits, valid)[0]
    assert greedy[0] == metrics.ids_to_string(best_path, trained.phones.symbols, ignore=())
    beam = transcribe.run(workdir, files, options=inference.Decoding(beam=3))
    symbols = set(trained.phones.symbols)
    assert len(beam) == 2 and all(set(t.split()) <= symbols for t in greedy + beam)
    with pytest.raises(config_lib.ConfigError, match="is a CTC model"):
        transcribe.run(workdir, files, options=inference.Decoding(ctc_weight=0.3))


def _edited(workdir, folder, key: str, value):
    """A folder holding `workdir`'s config.json with `key` ('a.b') set to `value`, by hand."""
    config = json.loads((workdir / "config.json").read_text())
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = value
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_hand_edited_config_json_is_one_line(asr_workdir, tts_workdir, tmp_path, compile_cache):
    """A value of the wrong type in a workdir's config.json: each command checks the file as
    training checks a config and names the file and the key (before: tracebacks, or a
    silently used value)."""
    wav = _wav(tmp_path / "a.wav", 1.0)
    cases = [
        (
            ("evaluate", "--workdir", _edited(asr_workdir, tmp_path / "e", "total_steps", "x")),
            r"ConfigError: \S+/e/config\.json: total_steps must be an integer, got 'x'",
        ),
        (
            (
                "transcribe",
                "--workdir",
                _edited(asr_workdir, tmp_path / "t", "model.scale_embedding", None),
                wav,
            ),
            r"ConfigError: \S+/t/config\.json: model\.scale_embedding must be a bool, got None",
        ),
        (
            (
                "synthesize",
                "--workdir",
                _edited(tts_workdir, tmp_path / "s", "optim.lr", "fast"),
                "--text=hello",
                f"--out={tmp_path / 'x.wav'}",
            ),
            r"ConfigError: \S+/s/config\.json: optim\.lr must be a float, got 'fast'",
        ),
    ]
    for (program, *args), pattern in cases:
        micro.assert_one_error_line(_run(program, *args, compile_cache=compile_cache), pattern)
    unknown = _edited(asr_workdir, tmp_path / "u", "optim.l_r", 1e-3)
    with pytest.raises(
        config_lib.ConfigError, match=r"config\.json: unknown config key 'optim\.l_r'"
    ):
        inference.load(unknown, task="asr")
    (tmp_path / "u" / "config.json").write_text('{"seed": ')
    with pytest.raises(config_lib.ConfigError, match=r"u/config\.json: Expecting value"):
        inference.load(unknown, task="asr")
