"""configs/speecht5_{asr,tts}_{tiny,base}.py and speecht5_{vc,se}_tiny.py: each fine-tuning config trains a few steps through
the training loop (the micro SpeechT5 model on the tiny corpus), from scratch and from a
pre-training workdir."""

import json
import pathlib

import jax
import micro
import numpy as np
import pytest
import test_train_speecht5

from unispeech_jax import config as config_lib
from unispeech_jax import train
from unispeech_jax.data import sources
from unispeech_jax.data import text as text_lib
from unispeech_jax.models import speecht5

REPO = pathlib.Path(__file__).resolve().parents[1]


# Speech translation reads real verse pairs: a small committed sample (tests/data/README.md).
BIBLE = REPO / "tests" / "data" / "bible_en_es.tsv"
TASK_DATA = {"st_tiny": {"data.corpus.translations": str(BIBLE)}}


def task_micro_config(name: str, **overrides):
    """configs/speecht5_<name>.py with the micro model, one bucket, 3 steps."""
    c = config_lib.load_file(REPO / "configs" / f"speecht5_{name}.py")
    config_lib.apply_overrides(
        c,
        [
            "total_steps=3",
            "log_every=1",
            "eval_every=3",
            "checkpoint_every=100",
            "eval_max_batches=1",
            "data.corpus.hours=0.02",
            "data.max_sample_len=64000",
            "data.bucket_boundaries=(64000,)",
            "data.text_bucket_boundaries=(128,)",
            "data.max_samples_per_batch=128000",
            "data.batch_multiple=2",
            "peak_flops_per_device=1e10",
        ]
        + test_train_speecht5.MICRO_MODEL
        + [f"{k}={v!r}" for k, v in overrides.items()],
    )
    return c


def _rows(workdir, split):
    rows = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.mark.parametrize(
    "name,metric",
    [
        ("asr_tiny", "asr/ce"),
        ("tts_tiny", "tts/l1"),
        ("asr_base", "asr/ce"),
        ("tts_base", "tts/l1"),
        ("vc_tiny", "vc/l1"),
        ("se_tiny", "se/l1"),
        ("st_tiny", "st/ce"),
        ("sid_tiny", "sid/ce"),
    ],
)
def test_finetuning_config_trains_and_evaluates(tiny_corpus, tmp_path, name, metric):
    workdir = tmp_path / name
    train.train(task_micro_config(name, **TASK_DATA.get(name, {})), workdir)
    rows = _rows(workdir, "train")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r[metric] > 0 for r in rows)
    saved = config_lib.from_json((workdir / "config.json").read_text())
    (evaluated,) = _rows(workdir, saved.data.eval_split)  # sid: train:heldout
    assert np.isfinite(evaluated["loss"]) and evaluated[metric] > 0
    params, _ = micro.restore_variables(workdir)
    if metric == "asr/ce":  # + 0.5 CTC on the encoder output
        assert saved.model.ctc_loss_weight == 0.5 and all(r["asr/ctc"] > 0 for r in rows)
        assert "ctc_proj" in params
    elif metric == "se/l1":  # the voice is the input's own
        assert saved.model.num_speakers == 0 and "speaker_table" not in params
        assert saved.data.corpus.reverb and len(saved.data.corpus.noise_snr) == 4
    elif metric == "st/ce":  # the text ids are the target language's
        target = text_lib.load_sp(workdir / "vocab" / "spm_tgt.model")
        assert params["embed_tokens"]["embedding"].shape[0] == text_lib.text_vocab_size(target)
        assert "ctc_proj" not in params and target.piece_to_id("á") != target.unk_id()
    elif metric == "sid/ce":  # one class per training speaker; accuracy on held-out rows
        speakers = sources.num_speakers(saved.data)
        assert speakers > 1 and saved.model.num_speakers == speakers
        assert params["sid_proj"]["kernel"].shape[-1] == speakers
        assert "speaker_table" not in params and 0 <= evaluated["sid/accuracy"] <= 1
    else:  # a learned table of the training speakers
        speakers = sources.num_speakers(saved.data)
        assert speakers > 1 and saved.model.num_speakers == speakers
        assert params["speaker_table"].shape == (speakers, saved.model.speaker_embedding_dim)


def test_init_from_loads_the_text_rows_only_for_the_same_symbols(tiny_corpus, tmp_path):
    """An st target vocabulary of the pre-trained text vocabulary's size but other symbols:
    its embedding rows start fresh (they were loaded, matched by shape alone) while the
    encoder loads; the pre-trained vocabulary itself as the target keeps them."""
    import logging

    from unispeech_jax.data import corpus, workdir_vocab

    pretrained = tmp_path / "pretrain"
    train.train(test_train_speecht5.micro_config(total_steps=1, eval_every=1), pretrained)
    english = pretrained / "vocab" / "spm.model"
    size = text_lib.load_sp(english).get_piece_size()
    spanish = [line.split("\t")[1] for line in BIBLE.read_text(encoding="utf-8").splitlines()]
    letters = sorted({c for line in spanish for c in line if c != " "})
    letters = (letters + [chr(0x3B1 + i) for i in range(size)])[: size - 4]  # Greek pads
    kept = [" ".join(letters)] + [
        "".join(c for c in line if c in letters or c == " ") for line in spanish
    ]
    corpus.write_sentencepiece(tmp_path / "es", kept)
    spanish_sp = tmp_path / "es.model"
    assert text_lib.load_sp(spanish_sp).get_piece_size() == size
    assert workdir_vocab.symbols(spanish_sp) != workdir_vocab.symbols(english)

    common = {
        "total_steps": 1,
        "eval_every": 100,
        "optim.lr": 0.0,  # the checkpoint holds the parameters as initialised
        "seed": 1,  # a fresh row differs from the pre-trained run's seed-0 initialisation
        "init_from": str(pretrained),
        "data.corpus.translations": str(BIBLE),
    }
    config = task_micro_config("st_tiny", **common, **{"data.target_sp_model": str(spanish_sp)})
    train.train(config, tmp_path / "st")
    before, _ = micro.restore_variables(pretrained)
    after, _ = micro.restore_variables(tmp_path / "st")
    rows = [v["embed_tokens"]["embedding"] for v in (before, after)]
    assert rows[0].shape == rows[1].shape and not np.allclose(rows[0], rows[1])
    for a, b in zip(*(jax.tree.leaves(v["encoder"]) for v in (after, before)), strict=True):
        np.testing.assert_array_equal(a, b)

    log = logging.getLogger("unispeech_jax")
    pinned = workdir_vocab.pin(config, tmp_path / "st", keep=False)
    assert train.pretrained_fresh(speecht5, pinned, str(pretrained), log) == (
        "embed_tokens/",
        "ctc_proj/",
    )
    same = task_micro_config("st_tiny", **common, **{"data.target_sp_model": str(english)})
    pinned = workdir_vocab.pin(same, tmp_path / "same", keep=False)
    assert train.pretrained_fresh(speecht5, pinned, str(pretrained), log) == ()


def test_a_speaker_table_smaller_than_the_data_is_refused(tiny_corpus):
    config = task_micro_config("tts_tiny", **{"model.num_speakers": 1})
    with pytest.raises(config_lib.ConfigError, match="num_speakers=1: the training split has"):
        speecht5.resolve_config(config)
    xvectors = task_micro_config("tts_tiny", **{"data.speaker_embeddings": "/x"})
    speecht5.resolve_config(xvectors)
    assert xvectors.model.num_speakers == 0


def test_finetuning_starts_from_a_pretraining_workdir_with_the_encoder_frozen(
    tiny_corpus, tmp_path
):
    """init_from loads the pre-trained parameters; during optim.freeze_steps the encoder
    (freeze_regex ^encoder/) keeps them while the decoder moves."""
    pretrained = tmp_path / "pretrain"
    train.train(test_train_speecht5.micro_config(total_steps=1, eval_every=1), pretrained)
    workdir = tmp_path / "asr"
    config = task_micro_config("asr_tiny", init_from=str(pretrained), **{"optim.freeze_steps": 3})
    train.train(config, workdir)
    before, _ = micro.restore_variables(pretrained)
    after, _ = micro.restore_variables(workdir)

    def same(part):
        return jax.tree.leaves(
            jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), after[part], before[part])
        )

    assert all(same("encoder")) and not all(same("decoder"))
    assert "ctc_proj" in after and "ctc_proj" not in before  # the new head starts fresh
