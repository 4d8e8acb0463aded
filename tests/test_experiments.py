"""The experiment drivers (unispeech_jax/experiments/): each runs end to end at micro scale
(every arm trains and is scored, the table and the plot are written) and a rerun trains and
scores nothing; their arm plans and argument checks."""

import pathlib

import pytest

from unispeech_jax import evaluate
from unispeech_jax import train as train_lib
from unispeech_jax.data import sources, workdir_vocab
from unispeech_jax.experiments import arms, speecht5_ablation, unispeech_crosslingual


def _forbid_training(monkeypatch):
    """Makes any training or evaluation a test failure (a rerun must skip them)."""

    def fail(*args, **kwargs):
        raise AssertionError(f"a rerun trained or evaluated again: {args[:2]}")

    monkeypatch.setattr(train_lib, "train", fail)
    monkeypatch.setattr(evaluate, "evaluate_workdir", fail)


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


@pytest.mark.slow
def test_crosslingual_micro_runs_every_arm_kind_and_reruns_nothing(
    tiny_corpus, tmp_path, monkeypatch
):
    """One arm of each pre-training kind (none, CTC, UniSpeech: contrastive is UniSpeech at
    alpha 0, the same code with another value)."""
    kinds = ["ctc_target", "ctc_transfer", "unispeech"]
    argv = f"--workdir {tmp_path} --scale micro --target de --arms {','.join(kinds)}"
    args = unispeech_crosslingual.parser().parse_args(argv.split())
    assert {a.pretrain for a in unispeech_crosslingual.chosen_arms(args.arms, False)} == {
        a.pretrain for a in unispeech_crosslingual.MAIN_ARMS
    }
    results = unispeech_crosslingual.run(args)
    text = results.read_text()
    rows = _table_rows(text)
    assert [name for name in rows if name != "arm"] == kinds
    for name in kinds:
        per = float(rows[name][2])
        assert 0 <= per <= 1000, (name, rows[name])
    assert "de has " in text and " of them en-us phones" in text
    assert results.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # The fine-tunes read the target's phones: German has phones en-us lacks, so their ids
    # (and the CTC head) are the target corpus's own.
    target = sources.resolve_data_dir(
        arms.load_config("tiny.py", ["data.corpus.hours=0.02", "data.corpus.languages='de'"]).data
    )
    _, own = unispeech_crosslingual.shared_phones(tiny_corpus, target)
    assert own
    kept = tmp_path / "finetune" / "unispeech" / "seed0" / "vocab" / "dict.phn.txt"
    assert workdir_vocab.symbols(kept) == workdir_vocab.symbols(target / "dict.phn.txt")

    _forbid_training(monkeypatch)
    before = results.read_text()
    assert unispeech_crosslingual.run(args).read_text() == before


@pytest.mark.slow
def test_speecht5_ablation_micro_runs_every_arm_kind_and_reruns_nothing(
    tiny_corpus, tmp_path, monkeypatch
):
    """The two kinds of arm: pre-trained (joint; no_quantizer and speech_only are the same
    code with other config values) and none."""
    args = speecht5_ablation.parser().parse_args(
        ["--workdir", str(tmp_path), "--scale", "micro", "--arms", "joint,none"]
    )
    results = speecht5_ablation.run(args)
    rows = _table_rows(results.read_text())
    assert [name for name in rows if name != "arm"] == ["joint", "none"]
    for arm in args.arms:
        cer, wer, ce, mcd, l1, roundtrip = (float(v) for v in rows[arm][1:])
        assert cer >= 0 and wer >= 0 and mcd > 0 and roundtrip >= 0, rows[arm]
        assert 0 < ce < 10 and 0 < l1 < 10, rows[arm]  # teacher-forced test losses
    assert not (tmp_path / "pretrain" / "none").exists()
    assert results.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    _forbid_training(monkeypatch)
    before = results.read_text()
    assert speecht5_ablation.run(args).read_text() == before


def test_grid_runs_alpha_zero_once_and_adds_only_new_pretrainings():
    grid = unispeech_crosslingual.grid_arms()
    names = {a.pretrain_name for a in grid}
    main = {a.pretrain_name for a in unispeech_crosslingual.MAIN_ARMS}
    # 3 x 3 points, alpha 0 being one run: 7 pre-trainings, 2 of them the main arms'.
    assert len(names) == len(grid) == 5 and not names & main
    assert all(a.alpha > 0 for a in grid)


def test_steps_overrides_keep_the_frozen_and_warm_up_shares():
    assert arms.steps_overrides("finetune_ctc.py", 50) == [
        "total_steps=50",
        "optim.freeze_steps=10",
        "optim.warmup_steps=25",  # unused by its tri-stage schedule (phase_ratio)
    ]
    asr = arms.load_config("speecht5_asr_tiny.py", arms.steps_overrides("speecht5_asr_tiny.py", 80))
    assert asr.total_steps == 80 and asr.optim.freeze_steps == 13 and asr.optim.warmup_steps == 8
    tts = arms.load_config(
        "speecht5_tts_tiny.py", arms.steps_overrides("speecht5_tts_tiny.py", 300)
    )
    assert tts.optim.freeze_steps == 50 and tts.optim.warmup_steps == 25  # 1/6 and 1/12


def test_summary_and_table():
    assert arms.summary([0.125], 100) == "12.5"
    assert arms.summary([0.1, 0.2, 0.3], 100) == "20.0 (10.0-30.0, 3 seeds)"
    table = arms.markdown_table(["a", "b"], [["x", "1"]])
    assert table == "| a | b |\n|---|---|\n| x | 1 |\n"
    assert arms.mean_curve([[(1, 1.0), (2, 3.0)], [(2, 5.0)]]) == [(2, 4.0)]


@pytest.mark.parametrize(
    "module,argv",
    [
        (unispeech_crosslingual, ["--set", "model.hiden_size=8"]),
        (speecht5_ablation, ["--set", "optim.lr=fast"]),
    ],
)
def test_config_mistake_is_one_line_exit_2(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["x", "--workdir", str(tmp_path), "--scale", "micro", *argv])
    with pytest.raises(SystemExit) as e:
        arms.main(module.parser(), module.run)
    assert e.value.code == 2
    assert not list(pathlib.Path(tmp_path).iterdir())


def test_arms_argument_picks_a_subset_in_the_drivers_order():
    args = speecht5_ablation.parser().parse_args(["--workdir", "w", "--arms", "none, joint"])
    assert args.arms == ["joint", "none"]  # joint first: it judges the others' round trip
    assert speecht5_ablation.parser().parse_args(["--workdir", "w"]).arms == list(
        speecht5_ablation.ARMS
    )
    names = unispeech_crosslingual.parser().parse_args(["--workdir", "w", "--arms", "unispeech"])
    assert [a.name for a in unispeech_crosslingual.chosen_arms(names.arms, False)] == ["unispeech"]
    # --grid runs the main arms that are grid cells, named or not.
    grid = unispeech_crosslingual.chosen_arms(["ctc_target"], True)
    assert [a.name for a in grid[:3]] == ["ctc_target", "contrastive", "unispeech"]
    assert grid[3:] == unispeech_crosslingual.grid_arms()


@pytest.mark.parametrize(
    "module,arms,message",
    [
        (unispeech_crosslingual, "unispeech,bert", "unknown arm bert; known: ctc_target,"),
        (speecht5_ablation, "none", "the joint arm is needed: its ASR model judges"),
        (speecht5_ablation, ",", "no arm given"),
    ],
)
def test_bad_arms_argument_is_one_line_exit_2(module, arms, message, capsys):
    with pytest.raises(SystemExit) as e:
        module.parser().parse_args(["--workdir", "w", "--arms", arms])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_bad_seeds_argument_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        speecht5_ablation.parser().parse_args(["--workdir", "w", "--seeds", "0,x"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_stopped_run_ends_the_driver_before_the_next_run(tmp_path, monkeypatch, caplog):
    """SIGTERM during a pre-training: train saves and returns; the driver must not fine-tune
    from (or score) the unfinished run, but exit with the signal's status and one line."""
    calls = []

    def stopped_train(config, workdir):
        calls.append(workdir)
        return {"stopped": "SIGTERM", "step": 7}

    monkeypatch.setattr(train_lib, "train", stopped_train)
    config = arms.load_config("tiny.py", ["total_steps=10"])

    def run(args):
        arms.train_arm(config, tmp_path / "pretrain")
        arms.train_arm(config, tmp_path / "finetune")
        raise AssertionError("went on after a stopped run")

    monkeypatch.setattr("sys.argv", ["x", "--workdir", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        arms.main(arms.base_parser("x", "test", {"full": None}, ["a"]), run)
    assert e.value.code == 143 and calls == [tmp_path / "pretrain"]
    assert "stopped by SIGTERM at step 7; running the same command again resumes" in caplog.text
