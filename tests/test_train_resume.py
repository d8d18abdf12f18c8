"""Kill a training run mid-epoch, resume it, and end where an uninterrupted run ends."""
import json
import os
import signal
import subprocess
import time

import pytest
import torch

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
    epochs = [json.loads(line)["epoch"] for line in (interrupted / "log.jsonl").read_text().splitlines()]
    assert epochs[-1] == 1


def test_resume_refuses_another_stage(data, tmp_path):
    from lavis_sevila import cli

    out = tmp_path / "run"
    cli.run(str(PROJECT / "finetune_answerer.yaml"), _options(data, out) + ["run.max_steps=2", "run.num_workers=0"])
    options = stage_options(data, out, "refine_localizer", "run.resume_ckpt_path=auto", "run.test_splits=[]")
    with pytest.raises(ckpt.CheckpointError, match="stage"):
        cli.run(str(PROJECT / "refine_localizer.yaml"), options)
