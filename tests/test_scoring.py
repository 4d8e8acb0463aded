"""Task scores of SpeechT5 fine-tuning workdirs (unispeech_jax/scoring.py) through `evaluate`:
known cases (perfect and one-word-off transcripts, the reference log-mels as output) and the
real models end to end with the JSON result."""

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


def test_evaluate_prints_and_writes_the_task_scores(
    asr_workdir, tts_workdir, tmp_path, compile_cache
):
    runs = [
        (asr_workdir, ["--beam", "2", "--ctc-weight", "0.3"], ("wer", "cer", "asr/ce")),
        (tts_workdir, ["--asr-workdir", str(asr_workdir)], ("mcd", "roundtrip_cer", "tts/l1")),
    ]
    for workdir, args, keys in runs:
        out = subprocess.run(
            [sys.executable, "-m", "unispeech_jax.evaluate", "--workdir", str(workdir)]
            + ["--split", "valid", "--max_batches", "1", *args],
            env=micro.subprocess_env(compile_cache),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        saved = json.loads((workdir / "eval_valid.json").read_text())
        for key in keys:
            assert np.isfinite(saved[key]) and f"{key} " in out.stdout
        assert saved["utterances"] == min(8, len(_split(workdir)))
