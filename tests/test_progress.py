"""Progress reporting: a bar on a terminal, one plain line per N steps (or per minute) elsewhere."""
from __future__ import annotations

import io
import logging

import pytest

from lavis_sevila.utils.progress import Progress, choose_mode, track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_stream(monkeypatch):
    """The progress logger writing to a file-like (non-TTY) stream, as a run's log file does."""
    monkeypatch.delenv("LAVIS_SEVILA_PROGRESS", raising=False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("lavis_sevila.progress")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level =: it clears the enabled-for cache
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def run_steps(progress: Progress, clock: Clock, steps: int, samples: int = 4) -> None:
    for step in range(steps):
        clock.now += clock.step
        progress.update(1, samples=samples, loss=1.0 / (step + 1), lr=1e-4, epoch=0)
    progress.close()


def test_a_non_tty_stream_gets_one_line_per_n_steps_and_no_carriage_returns(log_stream):
    clock = Clock(step=1.0)
    progress = Progress(25, "train finetune_answerer", every_steps=10, stream=log_stream, clock=clock)
    assert progress.mode == "lines"
    run_steps(progress, clock, 25)
    text = log_stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3  # steps 10 and 20, and the last one at close
    assert lines[0] == ("train finetune_answerer: step 10/25 (40%) | loss 0.1 | lr 0.0001 | epoch 0 | "
                        "4.0 samples/s | elapsed 0:00:10 | ETA 0:00:15")
    assert lines[2].startswith("train finetune_answerer: step 25/25 (100%) | loss 0.04 |") and "ETA 0:00:00" in lines[2]


def test_slow_steps_get_a_line_per_minute(log_stream):
    clock = Clock(step=30.0)
    progress = Progress(10, "train", every_steps=100, every_seconds=60, stream=log_stream, clock=clock)
    run_steps(progress, clock, 5)
    steps = [line.split(" | ")[0] for line in log_stream.getvalue().splitlines()]
    assert steps == ["train: step 2/10 (20%)", "train: step 4/10 (40%)", "train: step 5/10 (50%)"]


def test_a_resumed_loop_counts_from_where_it_resumed(log_stream):
    clock = Clock(step=2.0)
    progress = Progress(20, "train", initial=10, every_steps=5, stream=log_stream, clock=clock)
    run_steps(progress, clock, 5, samples=8)
    first = log_stream.getvalue().splitlines()[0]
    assert first.startswith("train: step 15/20 (75%)") and "4.0 samples/s" in first and "ETA 0:00:10" in first


def test_a_terminal_gets_a_bar_and_no_log_lines(log_stream):
    terminal = Terminal()
    clock = Clock(step=1.0)
    progress = Progress(25, "train", every_steps=10, stream=terminal, clock=clock)
    assert progress.mode == "bar"
    run_steps(progress, clock, 25)
    assert "\r" in terminal.getvalue() and "25/25" in terminal.getvalue()
    assert log_stream.getvalue() == ""


def test_the_mode_can_be_forced_and_disabled(monkeypatch, log_stream):
    monkeypatch.setenv("LAVIS_SEVILA_PROGRESS", "lines")
    assert choose_mode(Terminal()) == "lines"
    monkeypatch.setenv("LAVIS_SEVILA_PROGRESS", "bars")
    with pytest.raises(ValueError, match="bar, lines, off"):
        choose_mode(io.StringIO())
    monkeypatch.delenv("LAVIS_SEVILA_PROGRESS")
    clock = Clock(step=1.0)
    run_steps(Progress(25, "train", enabled=False, stream=io.StringIO(), clock=clock), clock, 25)
    assert log_stream.getvalue() == ""
    with pytest.raises(ValueError, match="every_steps"):
        Progress(1, "train", every_steps=0)


def test_track_reports_batches_and_samples(log_stream):
    batches = [{"num_samples": 3}] * 7
    seen = list(track(batches, "evaluate", every_steps=5, stream=log_stream, samples=lambda b: b["num_samples"]))
    assert seen == batches
    lines = log_stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["evaluate: batch 5/7 (71%)", "evaluate: batch 7/7 (100%)"]


def test_a_training_run_logged_to_a_pipe_prints_plain_lines(tmp_path):
    """The real entry point, stderr a pipe (not a TTY): one line per run.log_freq steps, no bar."""
    from training_helpers import PROJECT, make_data, python, run_module, stage_options

    data = make_data(tmp_path / "data", train=16, val=0, test=3)
    options = stage_options(data, tmp_path / "out", "finetune_answerer", "run.log_freq=2", "run.inference=uniform",
                            "run.tensorboard=false")
    out = run_module([python(), "-m", "lavis_sevila.train", "--cfg-path", str(PROJECT / "finetune_answerer.yaml"),
                      "--options", *options], env_extra={"LAVIS_SEVILA_PROGRESS": ""})
    log = out.stdout + out.stderr
    assert "\r" not in log
    lines = [line for line in log.splitlines() if "lavis_sevila.progress" in line]
    train = [line for line in lines if "train finetune_answerer: step" in line]
    assert [line.split(": step ")[1].split(" |")[0] for line in train] == ["2/4 (50%)", "4/4 (100%)"]
    for line in train:
        for field in ("| loss ", "| lr ", "samples/s", "| ETA "):
            assert field in line, line
    assert any("evaluate: batch 1/1" in line for line in lines)
