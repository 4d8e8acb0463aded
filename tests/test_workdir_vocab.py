"""A workdir keeps the vocabulary its model was trained with; evaluate scores other data,
or another step, through it (unispeech_jax/data/workdir_vocab.py, evaluate.py)."""

import json
import shutil

import numpy as np
import pytest
from micro import micro_config

from unispeech_jax import evaluate, train
from unispeech_jax.data import pipeline, sources, workdir_vocab
from unispeech_jax.data.stats import DataError


def corpus_copy(corpus, out, dict_lines):
    """The manifests and label files of `corpus` (the audio stays where its manifests point)
    with `dict_lines` as its dict.phn.txt."""
    out.mkdir()
    for f in corpus.iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    (out / "dict.phn.txt").write_text("".join(dict_lines), encoding="utf-8")
    return out


def eval_phones(config, split="test"):
    return np.concatenate([b["phones"].ravel() for b in pipeline.make_eval_iter(config, split)])


@pytest.fixture(scope="module")
def trained(tiny_corpus_env, tmp_path_factory):
    """(workdir, its config) of a six-step micro run."""
    work = tmp_path_factory.mktemp("vocab") / "w"
    config = micro_config()
    train.train(config, work)
    return work, config


def test_evaluate_other_data_maps_phones_by_symbol(trained, tmp_path):
    """The same phones in another order: the same label ids and PER as the run's own data
    (read with its own dict, the ids would be shuffled); a phone the model has no id for is
    refused by name."""
    work, config = trained
    corpus = sources.resolve_data_dir(config.data)
    lines = (corpus / "dict.phn.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    assert (work / "vocab" / "dict.phn.txt").read_text(encoding="utf-8") == "".join(lines)
    shuffled = corpus_copy(corpus, tmp_path / "shuffled", lines[::-1])

    own = evaluate.evaluate_workdir(work, "test")
    other = evaluate.evaluate_workdir(work, "test", data_dir=shuffled)
    assert other["per"] == own["per"] and other["examples"] == own["examples"]
    assert json.loads((work / "eval_test_shuffled.json").read_text()) == other
    assert json.loads((work / "eval_test.json").read_text()) == own

    unpinned = config.copy_and_resolve_references()
    unpinned.data.source, unpinned.data.manifest_dir = "manifest", str(shuffled)
    pinned = workdir_vocab.pin(unpinned, work, keep=False)
    assert pinned.data.vocab_path == str(work / "vocab" / "dict.phn.txt")
    np.testing.assert_array_equal(eval_phones(pinned), eval_phones(config))
    assert (eval_phones(unpinned) != eval_phones(config)).any()  # what the kept dict prevents

    extra = corpus_copy(corpus, tmp_path / "extra", lines + ["ʘ 1\n", "ǃ 1\n"])
    with pytest.raises(DataError, match="has 2 symbols the model's vocabulary .* no id for: ʘ ǃ"):
        evaluate.evaluate_workdir(work, "test", data_dir=extra)


def test_evaluate_step_writes_its_own_file(trained):
    work, _ = trained
    newest = evaluate.evaluate_workdir(work, "test", max_batches=1)
    older = evaluate.evaluate_workdir(work, "test", max_batches=1, step=4)
    assert newest["step"] == 6 and older["step"] == 4
    assert json.loads((work / "eval_test_step4.json").read_text()) == older
    assert json.loads((work / "eval_test.json").read_text()) == newest


def test_resume_and_init_from_read_the_kept_vocabulary(trained, tmp_path):
    """Training again in the workdir reads its kept dict whatever the corpus's order; a new
    run initialised from it starts from its dict when the corpus's phones are among it, and
    from the corpus's own otherwise."""
    work, config = trained
    corpus = sources.resolve_data_dir(config.data)
    lines = (corpus / "dict.phn.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    moved = config.copy_and_resolve_references()
    moved.data.source = "manifest"
    moved.data.manifest_dir = str(corpus_copy(corpus, tmp_path / "shuffled", lines[::-1]))
    kept = work / "vocab" / "dict.phn.txt"
    assert workdir_vocab.pin(moved, work).data.vocab_path == str(kept)

    fresh = tmp_path / "fresh"
    workdir_vocab.pin(moved, fresh, init_from=str(work))
    assert (fresh / "vocab" / "dict.phn.txt").read_bytes() == kept.read_bytes()

    moved.data.manifest_dir = str(corpus_copy(corpus, tmp_path / "extra", lines + ["ʘ 1\n"]))
    other = tmp_path / "other"
    workdir_vocab.pin(moved, other, init_from=str(work))
    assert (other / "vocab" / "dict.phn.txt").read_text(encoding="utf-8").endswith("ʘ 1\n")
    with pytest.raises(DataError, match="no id for: ʘ"):
        workdir_vocab.pin(moved, work)
