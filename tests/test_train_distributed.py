"""Several processes (torchrun + gloo) and DeepSpeed ZeRO on CPU, on the tiny model.

Each case also checks resuming: 2 steps, then resume to 4, must equal 4 straight steps,
and evaluation must count each test question exactly once (5 questions over 2 ranks).
"""
import json
import pytest
import torch

from lavis_sevila.models import checkpoint as ckpt
from training_helpers import PROJECT, make_data, python, run_module, stage_options

TORCHRUN = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"), train=16, val=0, test=5)


def _launch(kind: str, options: list[str], port: int):
    train = ["--cfg-path", str(PROJECT / "finetune_answerer.yaml"), "--options", *options]
    if kind == "python":
        args = [python(), "-m", "lavis_sevila.train", *train]
    elif kind == "deepspeed":
        args = [python(), "-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port", str(port),
                "--module", "lavis_sevila.train", *train]
    else:
        args = [python(), *TORCHRUN, str(port), "-m", "lavis_sevila.train", *train]
    return run_module(args, env_extra={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"})


CASES = {
    "ddp_gloo_2proc": ("torchrun", []),
    "zero2_deepspeed_launcher": ("deepspeed", ["run.runner=runner_deepspeed"]),
    "zero3_2proc": ("torchrun", ["run.runner=runner_deepspeed", "run.deepspeed.zero_optimization.stage=3"]),
    "zero2_no_launcher": ("python", ["run.runner=runner_deepspeed"]),
}


# every case trains and evaluates in the default run; resuming DeepSpeed (2 more launches
# each, ~40 s) is in the slow set
PARAMS = [
    pytest.param("ddp_gloo_2proc", True, id="ddp_gloo_2proc-resume"),
    pytest.param("zero2_deepspeed_launcher", False, id="zero2"),
    pytest.param("zero3_2proc", False, id="zero3_2proc"),
    pytest.param("zero2_no_launcher", False, id="zero2_no_launcher"),
    pytest.param("zero2_deepspeed_launcher", True, id="zero2-resume", marks=pytest.mark.slow),
    pytest.param("zero3_2proc", True, id="zero3_2proc-resume", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,resume", PARAMS)
def test_multi_process_training_resume_and_exact_once_evaluation(case, resume, data, tmp_path):
    launcher, extra = CASES[case]
    port = 29500 + list(CASES).index(case) * 7 + 3 * resume
    common = [*extra, "run.batch_size_train=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _launch(launcher, stage_options(data, straight, "finetune_answerer", *common, "run.max_steps=4"), port)
    _check_evaluation(straight, 2 if launcher == "torchrun" else 1)
    if not resume:
        return
    _launch(launcher, stage_options(data, resumed, "finetune_answerer", *common, "run.max_steps=2", "run.test_splits=[]"), port + 1)
    _launch(launcher, stage_options(data, resumed, "finetune_answerer", *common, "run.max_steps=4",
                                    "run.resume_ckpt_path=auto"), port + 2)
    a = ckpt.read_checkpoint(straight / "checkpoint_final.pth")
    b = ckpt.read_checkpoint(resumed / "checkpoint_final.pth")
    assert a["manifest"]["iteration"] == b["manifest"]["iteration"] == 4
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], rtol=0, atol=1e-6), key


def _check_evaluation(straight, world):
    metrics = json.loads((straight / "metrics_final.json").read_text())["test"]
    assert metrics["total"] == 5
    lines = (straight / "result" / "predictions_test_final.jsonl").read_text().splitlines()
    ids = [json.loads(line)["question_id"] for line in lines]
    assert len(ids) == len(set(ids)) == 5
    assert json.loads((straight / "versions.json").read_text())["world_size"] == world
