"""The speech-to-speech user commands on tiny trained workdirs: `convert_voice` (vc) and
`enhance` (se), end to end as subprocesses, and their one-line errors."""

import micro
import numpy as np
import pytest
import soundfile as sf
from test_transcribe_synthesize import _run, _wav

from unispeech_jax import config as config_lib
from unispeech_jax import convert_voice, inference
from unispeech_jax.data import sources


def _speaker(workdir, i=1):
    data = inference.load(workdir).config.data
    return sources.speaker_names(sources.resolve_data_dir(data), data)[i]


@pytest.mark.parametrize("task", ["vc", "se"])
def test_the_command_writes_speech(task, vc_workdir, se_workdir, tmp_path, compile_cache):
    workdir = vc_workdir if task == "vc" else se_workdir
    source = _wav(tmp_path / "in.flac", 1.2, rate=22_050, channels=2)
    out = tmp_path / "out.wav"
    voice = ["--speaker", _speaker(vc_workdir)] if task == "vc" else []
    module = "convert_voice" if task == "vc" else "enhance"
    result = _run(
        module, "--workdir", workdir, source, "--out", out, *voice, compile_cache=compile_cache
    )
    assert result.returncode == 0, result.stderr[-3000:]
    audio, rate = sf.read(str(out))
    assert rate == 16_000 and len(audio) > 0 and np.abs(audio).max() > 0
    assert result.stdout.startswith(f"{out}\t")


def test_conversion_follows_the_target_speaker(vc_workdir):
    """The table row of the named speaker is the input: another speaker, another output."""
    trained = inference.load(vc_workdir, task="vc")
    wave = np.random.default_rng(0).standard_normal(20_000).astype(np.float32) * 0.1
    (a,) = inference.convert(trained, [wave], [0])
    (b,) = inference.convert(trained, [wave], [1])
    (again,) = inference.convert(trained, [wave], [0])
    np.testing.assert_array_equal(a, again)
    assert a.shape[1] == 80 and not np.allclose(a[: len(b)], b[: len(a)])


def test_errors_are_one_line(vc_workdir, se_workdir, tts_workdir, tmp_path, compile_cache):
    source, out = _wav(tmp_path / "in.wav", 0.5), tmp_path / "out.wav"
    micro.assert_one_error_line(
        _run("enhance", "--workdir", vc_workdir, source, "--out", out),
        r"trained for model.task 'vc'.*'se'",
    )
    micro.assert_one_error_line(
        _run("convert_voice", "--workdir", vc_workdir, "--out", out), r"one input audio file"
    )
    cases = [
        (dict(workdir=vc_workdir), r"target voice is missing: --speaker"),
        (dict(workdir=vc_workdir, speaker="nobody"), r"'nobody' is not a training"),
        (dict(workdir=tts_workdir, speaker="x"), r"trained for model.task 'tts'.*'vc'"),
        (dict(workdir=vc_workdir, source=tmp_path / "no.wav"), r"no\.wav: cannot read audio"),
        (dict(workdir=se_workdir, task="se", speaker="x"), r"not a training speaker|without"),
    ]
    for kwargs, pattern in cases:
        kwargs = {"source": source, "out": out, **kwargs}
        with pytest.raises((inference.InputError, config_lib.ConfigError), match=pattern):
            convert_voice.run(**kwargs)
    assert not out.exists()
