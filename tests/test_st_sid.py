"""Speech translation and speaker identification end to end on micro workdirs: translations
through `transcribe`, BLEU/chrF and accuracy/EER through `evaluate`'s scorers, the x-vector
export TTS reads; the SID loss terms and the trial and chrF helpers on known cases."""

import json
import subprocess
import sys

import jax.numpy as jnp
import micro
import numpy as np
import pytest
import soundfile as sf
import test_finetune_configs

from unispeech_jax import config as config_lib
from unispeech_jax import evaluate, inference, metrics, scoring, transcribe
from unispeech_jax.data import data_config, pipeline
from unispeech_jax.data.stats import DataError
from unispeech_jax.models.speecht5.tasks import sid
from unispeech_jax.tools import speaker_embeddings


def _wav(path, seconds, seed=0):
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16_000))
    sf.write(str(path), x.astype(np.float32), 16_000)
    return path


# ============================================================================ helpers


def test_chrf_on_known_cases():
    corpus = ["y lloró Jesús", "orad sin cesar"]
    assert metrics.chrf(corpus, corpus) == pytest.approx(100.0)
    assert metrics.chrf(corpus, ["qqq", "zzz"]) == 0.0
    assert 0.0 < metrics.chrf(corpus, ["y lloró", corpus[1]]) < 100.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        metrics.chrf(corpus, corpus[:1])


def test_cosine_trials_pair_every_two_utterances():
    embeddings = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    scores, labels = metrics.cosine_trials(embeddings, ["a", "a", "b"])
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0])  # pairs (0,1), (0,2), (1,2)
    assert labels.tolist() == [1, 0, 0]
    assert metrics.equal_error_rate(scores, labels) == 0.0


def test_sid_terms_count_training_speakers_of_real_rows_only():
    logits = jnp.array([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0], [0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    speaker = jnp.array([0, 2, -1, 1])
    counted = jnp.array([True, True, False, True])  # row 2: an unseen voice
    ce, accuracy = sid.class_terms(logits, speaker, counted)
    wrong = -np.log(np.exp(0.0) / (np.exp(9.0) + 2.0))  # row 3 scores speaker 0
    right = -np.log(np.exp(9.0) / (np.exp(9.0) + 2.0))
    assert float(ce) == pytest.approx((2 * right + wrong) / 3, rel=1e-5)
    assert float(accuracy) == pytest.approx(2 / 3)
    uniform, _ = sid.class_terms(jnp.zeros((2, 4)), jnp.array([1, 3]), jnp.array([True, True]))
    assert float(uniform) == pytest.approx(np.log(4.0), rel=1e-6)


# ============================================================================ ST


def test_transcribe_translates_with_the_target_vocabulary(st_workdir, tmp_path):
    """The st workdir's text is the target language's: batch and one-at-a-time decoding agree,
    and every character is one of spm_tgt.model's."""
    files = [_wav(tmp_path / "a.wav", 1.0), _wav(tmp_path / "b.wav", 2.0, seed=1)]
    texts = transcribe.run(st_workdir, files, batch_size=2)
    trained = inference.load(st_workdir, task="st")
    assert (
        trained.sp.get_piece_size()
        == inference.text_lib.load_sp(st_workdir / "vocab" / "spm_tgt.model").get_piece_size()
    )
    waves = [inference.read_audio_file(f) for f in files]
    assert texts == [inference.transcribe(trained, [w])[0] for w in waves]
    pieces = {trained.sp.id_to_piece(i) for i in range(trained.sp.get_piece_size())}
    assert all(c in pieces or c == " " for text in texts for c in text.replace("▁", " "))


def test_st_scores_are_bleu_and_chrf_of_the_translations(st_workdir):
    trained = inference.load(st_workdir, task="st")
    out = scoring.score(
        st_workdir,
        trained.config,
        trained.variables["params"],
        {k: v for k, v in trained.variables.items() if k != "params"},
        trained.step,
        "test",
        scoring.Options(limit=4),
    )
    split = pipeline.task_split(trained.config, "test")
    refs = split.texts[:4]
    hyps = inference.transcribe(
        trained,
        [scoring._read(p, n) for p, n in zip(split.audio_paths[:4], split.audio_lengths[:4])],
    )
    assert out["utterances"] == 4 and out["bleu"] == pytest.approx(metrics.bleu(refs, hyps))
    assert out["chrf"] == pytest.approx(metrics.chrf(refs, hyps))
    assert any(c in "áéíóúñ" for c in "".join(refs))  # the references are the Spanish side


def test_transcribe_refuses_a_speaker_identification_workdir(sid_workdir, tmp_path):
    with pytest.raises(config_lib.ConfigError, match="model.task 'sid'; .*'asr' or 'st'"):
        transcribe.run(sid_workdir, [_wav(tmp_path / "a.wav", 1.0)])


# ============================================================================ SID


def test_sid_scores_accuracy_on_training_speakers_and_eer_on_trials(sid_workdir):
    trained = inference.load(sid_workdir, task="sid")
    state = {k: v for k, v in trained.variables.items() if k != "params"}
    params = trained.variables["params"]

    def scores(split):
        return scoring.score(
            sid_workdir, trained.config, params, state, trained.step, split, scoring.Options()
        )

    heldout, test = scores("train:heldout"), scores("test")
    assert 0.0 <= heldout["accuracy"] <= 1.0 and heldout["utterances"] > 0
    assert "accuracy" not in test  # unseen voices: no class of the head
    n = test["utterances"]
    assert test["trials"] == n * (n - 1) / 2 and 0.0 <= test["eer"] <= 1.0
    split = pipeline.task_split(trained.config, "test")
    waves = [scoring._read(p, k) for p, k in zip(split.audio_paths, split.audio_lengths)]
    embeddings, _ = inference.embed_speakers(trained, waves)
    expected = metrics.equal_error_rate(*metrics.cosine_trials(embeddings, split.speaker_names))
    assert test["eer"] == pytest.approx(expected)


def test_evaluate_leaves_out_the_class_terms_of_unseen_voices(sid_workdir, compile_cache):
    """On the test split (no training speaker) the loss, sid/ce and sid/accuracy are not
    defined: neither printed nor written (they were 0.0); eer is. On train:heldout they are
    the means over its rows."""
    cli = [sys.executable, "-m", "unispeech_jax.evaluate", "--workdir", str(sid_workdir)]
    env = micro.subprocess_env(compile_cache)
    cli += ["--split", "test", "--max_batches", "1"]
    out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = json.loads((sid_workdir / "eval_test.json").read_text())
    printed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    for keys in (saved.keys(), printed):
        assert {"eer", "trials"} <= set(keys)
        assert not {"loss", "sid/ce", "sid/accuracy", "accuracy"} & set(keys)
    assert "not applicable" in out.stderr
    heldout = evaluate.evaluate_workdir(sid_workdir, "train:heldout", max_batches=1)
    assert heldout["sid/ce"] > 0 and heldout["loss"] == heldout["sid/ce"]
    assert 0 <= heldout["sid/accuracy"] <= 1 and "counted_rows" not in heldout


def test_exported_embeddings_are_x_vectors_tts_reads(sid_workdir, tmp_path):
    """One embedding per manifest row of each split; a TTS config reads them as its
    `speaker_embedding` input."""
    out = tmp_path / "xvec"
    written = speaker_embeddings.main(["--workdir", str(sid_workdir), "--out", str(out)])
    saved = config_lib.from_json((sid_workdir / "config.json").read_text())
    width = saved.model.speaker_embedding_dim
    for split, rows in written.items():
        vectors = np.load(out / f"{split}.xvector.npy")
        assert vectors.shape == (rows, width) and np.isfinite(vectors).all()
    tts = test_finetune_configs.task_micro_config(
        "tts_tiny", **{"data.speaker_embeddings": str(out), "model.num_speakers": 0}
    )
    split = pipeline.task_split(tts, "valid")
    assert split.xvectors.shape == (len(split), width)
    with pytest.raises(SystemExit) as exit_info:
        speaker_embeddings.main(["--workdir", str(tmp_path / "none"), "--out", str(out)])
    assert exit_info.value.code == 2


def test_a_missing_translations_file_is_one_clear_error(tmp_path):
    config = test_finetune_configs.task_micro_config(
        "st_tiny", **{"data.corpus.translations": str(tmp_path / "bible.tsv")}
    )
    with pytest.raises(DataError, match=r"data.corpus.translations=.*bible.tsv': file not found"):
        data_config.resolve(config.data, "st")
