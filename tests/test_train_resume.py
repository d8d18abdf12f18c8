"""Kill a training run mid-epoch, resume it, and end where an uninterrupted run ends.

Resuming cannot cheat: the resumed epoch keeps the counts (loss, seen, skipped) of the part
before the kill, a run stopped by too many unreadable videos stops again, and a resume
with settings that change the data order or the optimisation is refused.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import torch

from lavis_sevila.data.samples import TooManySkipped
from lavis_sevila.models import checkpoint as ckpt
from training_helpers import PROJECT, REPO, make_data, python, run_module, stage_options


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"), train=24, val=0, test=3)


def _options(data, out):
    return stage_options(
        data, out, "finetune_answerer",
        "run.max_epoch=2", "run.batch_size_train=2", "run.num_workers=1", "run.save_every_steps=2",
        "run.test_splits=[]", "model.freeze_vit=false", "model.freeze_llm=false",
        "model.llm.config.dropout_rate=0.1",  # dropout on: the resumed RNG stream must match too
    )


def _train_args(options):
    return [python(), "-m", "lavis_sevila.train", "--cfg-path", str(PROJECT / "finetune_answerer.yaml"), "--options", *options]


def _iteration(path):
    try:
        return torch.load(path, weights_only=True)["manifest"]["iteration"]
    except Exception:  # not written yet, or being renamed into place
        return None


def test_resume_after_kill_matches_an_uninterrupted_run(data, tmp_path):
    straight = tmp_path / "straight"
    run_module(_train_args(_options(data, straight)))

    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(_train_args(_options(data, interrupted)), cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        killed_at = _iteration(interrupted / "checkpoint_last.pth")
        if killed_at is not None and 0 < killed_at < 12:  # 12 steps per epoch: mid-epoch 0
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert killed_at is not None and killed_at < 12, "the run finished before it could be killed mid-epoch"
    assert not (interrupted / "checkpoint_final.pth").exists()

    run_module(_train_args(_options(data, interrupted) + ["run.resume_ckpt_path=auto"]))
    a = ckpt.read_checkpoint(straight / "checkpoint_final.pth")
    b = ckpt.read_checkpoint(interrupted / "checkpoint_final.pth")
    assert a["manifest"]["iteration"] == b["manifest"]["iteration"] == 24
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], rtol=0, atol=1e-6), key
    # the epoch log equals the uninterrupted run's, the killed epoch included (its loss is
    # the mean over all 12 steps, before and after the kill; seen counts all 24 questions)
    rows = [_log(straight), _log(interrupted)]
    assert [row["epoch"] for row in rows[1]] == [0, 1]
    for row_a, row_b in zip(*rows):
        assert row_a["seen"] == row_b["seen"] == 24 and row_a["skipped"] == row_b["skipped"] == 0
        assert row_a["iteration"] == row_b["iteration"]
        assert row_b["loss"] == pytest.approx(row_a["loss"], rel=0, abs=1e-6)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_steps(data, tmp_path_factory):
    """A run stopped after 2 optimizer steps (resumable), in process."""
    from lavis_sevila import cli

    out = tmp_path_factory.mktemp("two_steps") / "run"
    cli.run(str(PROJECT / "finetune_answerer.yaml"), _short(data, out))
    return out


def _short(data, out, *extra):
    return _options(data, out) + ["run.max_steps=2", "run.num_workers=0", *extra]


def test_resume_refuses_another_stage(data, two_steps):
    from lavis_sevila import cli

    options = stage_options(data, two_steps, "refine_localizer", "run.resume_ckpt_path=auto", "run.test_splits=[]")
    with pytest.raises(ckpt.CheckpointError, match="stage"):
        cli.run(str(PROJECT / "refine_localizer.yaml"), options)


@pytest.mark.parametrize("change,key", [
    ("run.batch_size_train=4", "run.batch_size_train"),
    ("run.init_lr=1e-3", "run.init_lr"),
    ("run.seed=7", "run.seed"),
    ("run.accum_grad_iters=2", "run.accum_grad_iters"),
    ("datasets.sevila_synthetic.build_info.n_frms.train=4", "datasets.sevila_synthetic.build_info.n_frms.train"),
])
def test_resume_refuses_a_change_of_data_order_or_optimisation(data, two_steps, change, key):
    """Step 2 of batches of 2 is not step 2 of batches of 4: refused, naming the key."""
    from lavis_sevila import cli

    with pytest.raises(ckpt.CheckpointError, match=re.escape(key)):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), _short(data, two_steps, "run.max_steps=3",
                                                                 "run.resume_ckpt_path=auto", change))


def test_resume_from_a_weights_only_checkpoint_says_so(data, two_steps):
    from lavis_sevila import cli

    final = two_steps / "checkpoint_final.pth"
    assert final.is_file()
    with pytest.raises(ckpt.CheckpointError, match="weights only.*checkpoint_last.pth"):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), _short(data, two_steps, f"run.resume_ckpt_path={final}"))


def test_resume_after_too_many_skipped_stops_again(data, tmp_path):
    """An epoch stopped by the skip limit may not pass on resume with 'seen 0, skipped 0'."""
    from lavis_sevila import cli

    videos = tmp_path / "videos"
    shutil.copytree(data / "videos", videos)
    (videos / "train_00003.mp4").write_bytes(b"not a video")  # 1 of 24 = 4% > the 1% allowed
    out = tmp_path / "run"
    options = _short(data, out, f"datasets.sevila_synthetic.build_info.videos.storage={videos}",
                     "run.max_steps=100", "run.max_epoch=1", "run.save_every_steps=1",
                     "model.freeze_llm=true", "model.freeze_vit=true")
    with pytest.raises(TooManySkipped, match="skipped 1 of 24"):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), options)
    assert torch.load(out / "checkpoint_last.pth", weights_only=True)["manifest"]["step_in_epoch"] == 12
    with pytest.raises(TooManySkipped, match="skipped 1 of 24"):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), options + ["run.resume_ckpt_path=auto"])
    assert not (out / "checkpoint_final.pth").exists() and not (out / "log.jsonl").exists()
