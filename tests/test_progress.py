"""The training console (unispeech_jax/progress.py) and the one-line answer of every
command-line tool to a mistyped flag (unispeech_jax/errors.py)."""

import logging
import subprocess
import sys
import time

import micro
import pytest

from unispeech_jax import progress


def metric_log(tmp_path, **kwargs):
    args = dict(active=True, peak_flops=1e10, measured=True)
    return progress.MetricLog(tmp_path, 100, 0, time.perf_counter(), **{**args, **kwargs})


def test_compiles_and_evaluations_are_left_out_of_the_rate(tmp_path):
    log = metric_log(tmp_path)
    try:
        time.sleep(1.2)  # the first step's compile
        log.advance(compiled=True)
        for _ in range(3):
            log.advance()
        time.sleep(1.2)  # an evaluation
        log.leave_out_elapsed()
        log.advance()
        assert log.bar.n == 5 and log.bar.format_dict["elapsed"] < 1.0
    finally:
        log.close()


def test_log_lines_are_written_above_the_bar(tmp_path, capsys):
    """A log record written while the bar is shown starts a line of its own (after the bar
    is cleared), instead of continuing the bar's line."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    root.addHandler(handler)
    try:
        log = metric_log(tmp_path)
        log.advance()
        log.bar.refresh()
        logging.getLogger("unispeech_jax").warning("LOGLINE here")
        log.close()
    finally:
        root.removeHandler(handler)
    out = capsys.readouterr().out
    line = next(row for row in out.split("\n") if "LOGLINE" in row)
    assert line.split("\r")[-1] == "LOGLINE here", repr(line)


def test_bar_units_and_an_mfu_above_one_is_marked_and_explained(tmp_path, caplog):
    shown = progress.postfix({"loss": 4.23, "ctc": 239.0, "mfu": 0.5, "accuracy": 1.0})
    assert shown == {"loss": "4.23", "ctc/utt": "239", "mfu": "0.5"}
    assert progress.postfix({"mfu": 1.29}) == {"mfu": "1.29!"}
    with caplog.at_level(logging.INFO, "unispeech_jax"):
        log = metric_log(tmp_path, peak_flops=2e9)
        for step in (1, 2):
            log.write(step, {"loss": 1.0, "mfu": 1.29})
        log.close()
    text = caplog.text
    assert "mfu: model FLOPs / (devices x 2e+09 FLOP/s, the float32 matmul ceiling" in text
    assert text.count("mfu 1.29 > 1 (marked !)") == 1 and "measured at start-up" in text


def test_closing_line(tmp_path):
    result = dict(step=6, saved=6, stopped=None, eval={"per": 0.5, "loss": 2.0}, eval_step=6)
    line = progress.closing_line(tmp_path, result, 0, 6, "valid", 1.25)
    assert line == (
        f"finished at step 6 of 6 after 1.2 min; checkpoint step 6 in {tmp_path}/checkpoints; "
        "last eval (valid, step 6): per=0.5 loss=2; "
        f"metrics in {tmp_path}/metrics.jsonl and {tmp_path}/tensorboard"
    )
    stopped = progress.closing_line(tmp_path, dict(result, stopped="SIGTERM"), 0, 9, "v", 1)
    assert stopped.startswith("stopped by SIGTERM at step 6 of 9") and "resumes" in stopped
    assert progress.closing_line(tmp_path, result, 6, 6, "v", 0) == (
        f"nothing to train: {tmp_path} is at step 6 of 6"
    )


@pytest.mark.parametrize(
    "module",
    [
        "transcribe",
        "synthesize",
        "aot",
        "data.corpus",
        "data.sword",
        "tools.kmeans_labels",
        "tools.speaker_embeddings",
    ],
)
def test_every_tool_answers_a_mistyped_flag_in_one_line(module, compile_cache, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", f"unispeech_jax.{module}", "--workdr", str(tmp_path)],
        env=micro.subprocess_env(compile_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    micro.assert_one_error_line(out, "FlagsError: .*workdr")
