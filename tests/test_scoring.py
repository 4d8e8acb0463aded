"""Task scores of SpeechT5 fine-tuning workdirs (unispeech_jax/scoring.py) through `evaluate`:
known cases (perfect and one-word-off transcripts, the reference log-mels as output of tts, vc
and se) and the
real models end to end with the JSON result."""

import dataclasses
import json
import subprocess
import sys

import micro
import numpy as np
import pytest

from unispeech_jax import evaluate, inference, metrics, scoring
from unispeech_jax.data import audio, features, pipeline


def _split(workdir, split="valid"):
    return pipeline.task_split(inference.load(workdir).config, split)


def test_asr_scores_of_known_transcripts(asr_workdir, monkeypatch):
    """wer/cer compare each utterance's transcript with its own .wrd line: 0 for the
    references themselves, exactly the dropped words' share with one word dropped each."""
    refs = _split(asr_workdir).texts
    monkeypatch.setattr(inference, "transcribe", lambda trained, waves, *a: list(refs))
    result = evaluate.evaluate_workdir(asr_workdir, "valid")
    assert result["wer"] == 0 and result["cer"] == 0 and result["utterances"] == len(refs)
    assert np.isfinite(result["asr/ce"])  # the losses are still there

    dropped = [" ".join(r.split()[1:]) for r in refs]
    monkeypatch.setattr(inference, "transcribe", lambda trained, waves, *a: list(dropped))
    result = evaluate.evaluate_workdir(asr_workdir, "valid")
    words = sum(len(r.split()) for r in refs)
    assert result["wer"] == pytest.approx(len(refs) / words)
    assert result["cer"] == pytest.approx(metrics.cer(refs, dropped))


def test_tts_scores_of_the_reference_mels_are_perfect(tts_workdir, asr_workdir, monkeypatch):
    """Generating each utterance's own log-mel gives MCD 0 and length ratio 1; the round trip
    compares the ASR model's transcripts of the vocoded speech with the input texts."""
    s = _split(tts_workdir)
    mels = [
        features.log_mel(audio.read_audio(p, int(n))[0]) for p, n in zip(s.mel_paths, s.mel_lengths)
    ]
    queue = list(mels)
    monkeypatch.setattr(
        inference,
        "synthesize_tokens",
        lambda trained, rows, **kw: [queue.pop(0) for _ in rows],
    )
    heard = []

    def transcribe(trained, waves, *args):
        assert trained.task == "asr" and len(waves) == len(mels)
        heard.extend(waves)
        return list(s.texts)

    monkeypatch.setattr(inference, "transcribe", transcribe)
    options = scoring.Options(asr_workdir=str(asr_workdir))
    result = evaluate.evaluate_workdir(tts_workdir, "valid", options=options)
    assert result["mcd"] == pytest.approx(0, abs=1e-9) and result["length_ratio"] == 1
    assert result["roundtrip_cer"] == 0 and result["roundtrip_wer"] == 0
    assert all(len(w) == (len(m) - 1) * 256 for w, m in zip(heard, mels))  # Griffin-Lim


def _log_mels(paths, lengths):
    return [features.log_mel(audio.read_audio(p, int(n))[0]) for p, n in zip(paths, lengths)]


def test_vc_scores_of_the_target_speakers_mels_are_perfect(vc_workdir, asr_workdir, monkeypatch):
    """Converting into the target speaker's own log-mel gives MCD 0 (the source recording's is
    not); the round trip transcribes the vocoded output."""
    s = _split(vc_workdir)
    targets = _log_mels(s.mel_paths, s.mel_lengths)
    queue = list(targets)

    def convert(trained, waves, speakers=None, xvectors=None):
        assert trained.task == "vc" and xvectors is None and list(speakers) == [-1] * len(waves)
        return [queue.pop(0) for _ in waves]

    monkeypatch.setattr(inference, "convert", convert)
    monkeypatch.setattr(inference, "transcribe", lambda trained, waves, *a: list(s.texts))
    options = scoring.Options(asr_workdir=str(asr_workdir))
    result = evaluate.evaluate_workdir(vc_workdir, "valid", options=options)
    assert result["mcd"] == pytest.approx(0, abs=1e-9) and result["length_ratio"] == 1
    assert result["source_mcd"] > 1 and result["utterances"] == len(s) > 0
    assert result["roundtrip_cer"] == 0 and np.isfinite(result["vc/l1"])


def test_se_scores_compare_the_output_and_the_noisy_input_with_the_clean(
    se_workdir, asr_workdir, monkeypatch
):
    """The clean log-mels as output: MCD 0 where the noisy input's is not; STOI of the vocoded
    output and of the input; the ASR model's transcripts of each, against the .wrd lines."""
    s = _split(se_workdir)
    clean = _log_mels(s.mel_paths, s.mel_lengths)
    queue = list(clean)
    monkeypatch.setattr(
        inference, "convert", lambda trained, waves, **kw: [queue.pop(0) for _ in waves]
    )
    noisy = _log_mels(s.audio_paths, s.audio_lengths)
    assert not np.allclose(noisy[0], clean[0])

    heard = []

    def transcribe(trained, waves, *args):  # the enhanced speech first, heard perfectly
        assert [len(w) for w in waves] == list(s.mel_lengths)  # cut to the clean length
        heard.append(waves)
        return list(s.texts) if len(heard) == 1 else ["x"] * len(waves)

    monkeypatch.setattr(inference, "transcribe", transcribe)
    options = scoring.Options(asr_workdir=str(asr_workdir))
    result = evaluate.evaluate_workdir(se_workdir, "valid", options=options)
    assert result["mcd"] == pytest.approx(0, abs=1e-9) and result["noisy_mcd"] > 1
    assert 0 < result["stoi"] <= 1 and 0 < result["noisy_stoi"] <= 1
    assert result["enhanced_cer"] == 0 and result["enhanced_wer"] == 0
    assert result["noisy_wer"] == 1 and len(heard) == 2


def test_evaluate_prints_and_writes_the_task_scores(
    asr_workdir, tts_workdir, vc_workdir, se_workdir, compile_cache
):
    """The command line once (TTS: its round trip takes every decoding flag), the other tasks
    through the function it calls with the options those flags make: each process start
    costs importing JAX and TensorFlow again."""
    for workdir in (asr_workdir, tts_workdir, vc_workdir, se_workdir):
        (workdir / "eval_valid.json").unlink(missing_ok=True)  # other tests' scores
    beam = ["--beam", "2", "--ctc-weight", "0.3"]
    out = subprocess.run(
        [sys.executable, "-m", "unispeech_jax.evaluate", "--workdir", str(tts_workdir)]
        + ["--split", "valid", "--max_batches", "1", "--asr-workdir", str(asr_workdir), *beam],
        env=micro.subprocess_env(compile_cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    decoding = inference.Decoding(beam=2, ctc_weight=0.3)
    limited = scoring.Options(decoding, limit=scoring.Options.batch_size)  # --max_batches 1
    judged = dataclasses.replace(limited, asr_workdir=str(asr_workdir))
    runs = [
        (tts_workdir, None, ("mcd", "roundtrip_cer", "tts/l1")),
        (asr_workdir, limited, ("wer", "cer", "asr/ce")),
        (vc_workdir, judged, ("mcd", "source_mcd", "roundtrip_cer", "vc/l1")),
        (se_workdir, judged, ("mcd", "noisy_mcd", "stoi", "enhanced_cer", "noisy_cer", "se/l1")),
    ]
    for workdir, options, keys in runs:
        if options is not None:
            evaluate.evaluate_workdir(workdir, "valid", 1, options=options)
        saved = json.loads((workdir / "eval_valid.json").read_text())
        for key in keys:
            assert np.isfinite(saved[key]), (workdir, key)
            assert options is not None or f"{key} " in out.stdout
        assert saved["utterances"] == min(8, len(_split(workdir)))
