"""Several processes (torchrun + gloo) and DeepSpeed ZeRO on CPU, on the tiny model.

Each case also checks resuming: 2 steps, then resume to 4, must equal 4 straight steps,
and evaluation must count each test question exactly once (5 questions over 2 ranks).
Training and evaluating from WebDataset shards under torchrun checks what each rank
trained on and predicted.  No fixed ports: torchrun --standalone picks its own.
"""
import json
from collections import Counter

import pytest
import torch

from lavis_sevila.models import checkpoint as ckpt
from training_helpers import (
    PROJECT, REPO, TORCHRUN_2, build_shards, free_port, make_data, python, run_module, stage_options,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"), train=16, val=0, test=5)


def _launch(kind: str, options: list[str]):
    train = ["--cfg-path", str(PROJECT / "finetune_answerer.yaml"), "--options", *options]
    if kind == "python":
        args = [python(), "-m", "lavis_sevila.train", *train]
    elif kind == "deepspeed":
        args = [python(), "-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port", str(free_port()),
                "--module", "lavis_sevila.train", *train]
    else:
        args = [python(), *TORCHRUN_2, "-m", "lavis_sevila.train", *train]
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
    common = [*extra, "run.batch_size_train=2", "run.save_every_steps=1"]  # older ZeRO sets must go
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _launch(launcher, stage_options(data, straight, "finetune_answerer", *common, "run.max_steps=4"))
    _check_evaluation(straight, 2 if launcher == "torchrun" else 1)
    if "run.runner=runner_deepspeed" in extra:
        _check_zero_set(straight, 2 if launcher == "torchrun" else 1)
    if not resume:
        return
    _launch(launcher, stage_options(data, resumed, "finetune_answerer", *common, "run.max_steps=2", "run.test_splits=[]"))
    _launch(launcher, stage_options(data, resumed, "finetune_answerer", *common, "run.max_steps=4",
                                    "run.resume_ckpt_path=auto"))
    a = ckpt.read_checkpoint(straight / "checkpoint_final.pth")
    b = ckpt.read_checkpoint(resumed / "checkpoint_final.pth")
    assert a["manifest"]["iteration"] == b["manifest"]["iteration"] == 4
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], rtol=0, atol=1e-6), key


def _check_zero_set(out, world):
    """One ZeRO partition per rank, stamped with the iteration checkpoint_last.pth names."""
    stamp = torch.load(out / "checkpoint_last.pth", weights_only=True)["zero_stamp"]
    assert stamp == 4
    names = sorted(path.name for path in out.glob("checkpoint_last.zero_rank*"))
    assert names == [f"checkpoint_last.zero_rank{rank}.iter4.pth" for rank in range(world)]


def _check_evaluation(straight, world):
    metrics = json.loads((straight / "metrics_final.json").read_text())["test"]
    assert metrics["total"] == 5
    lines = (straight / "result" / "predictions_test_final.jsonl").read_text().splitlines()
    ids = [json.loads(line)["question_id"] for line in lines]
    assert len(ids) == len(set(ids)) == 5
    assert json.loads((straight / "versions.json").read_text())["world_size"] == world


@pytest.mark.parametrize("workers", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_torchrun_from_shards_gives_each_rank_its_own_share(workers, tmp_path):
    """2 ranks, gloo, train + evaluate from shards: disjoint shares, each question once.

    The datasets are built before the runner starts; they must still split the shards by
    the rank they run on (each rank streamed every shard before, training on the data twice).
    """
    data = make_data(tmp_path / "synthetic", train=16, val=0, test=6)
    train_shards = build_shards(data, "train", tmp_path / "shards_train", min_shards=4)  # 4 x 4 clips
    test_shards = build_shards(data, "test", tmp_path / "shards_test", min_shards=4)  # 3 x 2 clips
    assert [s["clips"] for s in train_shards.shards] == [4, 4, 4, 4]
    out = tmp_path / "run"
    key = "datasets.sevila_synthetic.build_info.shards"
    options = stage_options(data, out, "finetune_answerer", "run.batch_size_train=2", "run.batch_size_eval=2",
                            f"{key}.train={train_shards.root}", f"{key}.test={test_shards.root}",
                            f"run.num_workers={workers}")  # DataLoader workers must see the rank too
    probes = _probe("train", out, ["--cfg-path", str(PROJECT / "finetune_answerer.yaml"), "--options", *options])
    train_ids = [json.loads(line)["qid"] for line in (data / "train.jsonl").read_text().splitlines()]
    test_ids = [json.loads(line)["qid"] for line in (data / "test.jsonl").read_text().splitlines()]
    trained = [set(probe["trained"]) for probe in probes]
    assert not trained[0] & trained[1], "a training question was streamed by both ranks"
    assert Counter(q for probe in probes for q in probe["trained"]) == Counter(train_ids)  # each exactly once
    predicted = [set(probe["predicted"]) for probe in probes]
    assert not predicted[0] & predicted[1], "a test question was predicted by both ranks"
    assert Counter(q for probe in probes for q in probe["predicted"]) == Counter(test_ids)
    assert all(probe["trained"] and probe["predicted"] for probe in probes), "a rank had no data"
    assert all((p["created"], p["destroyed"], p["group_alive_after_run"]) == (1, 1, False) for p in probes)
    lines = (out / "result" / "predictions_test_final.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["question_id"] for line in lines) == sorted(test_ids)
    [record] = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert record["seen"] == 16 and record["iteration"] == 4  # 8 questions per rank, batches of 2


def _probe(entry: str, out, argv: list[str]) -> list[dict]:
    """Run tests/distributed_probe.py under torchrun (2 ranks); each rank's record."""
    run_module([python(), *TORCHRUN_2, str(REPO / "tests" / "distributed_probe.py"), entry, str(out), *argv],
               env_extra={"OMP_NUM_THREADS": "1"})
    return [json.loads((out / f"probe_rank{rank}.json").read_text()) for rank in (0, 1)]


def test_pipeline_under_torchrun_holds_one_process_group_for_all_steps(data, tmp_path):
    """Train, then evaluate, in one launch: one group created before the first step's data,
    shared by both steps, destroyed once at the end."""
    out = tmp_path / "pipeline"
    options = stage_options(data, out, "finetune_answerer", "run.batch_size_train=2", "run.max_steps=1")
    spec = {"pipeline": {"output_dir": str(out), "options": options, "steps": [
        {"name": "finetune_answerer", "cfg": str(PROJECT / "finetune_answerer.yaml")},
        {"name": "eval", "cfg": str(PROJECT / "eval_qa.yaml"), "evaluate": True, "inputs": ["finetune_answerer"]},
    ]}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    probes = _probe("pipeline", out, ["--cfg-path", str(path)])
    assert all((p["created"], p["destroyed"], p["group_alive_after_run"]) == (1, 1, False) for p in probes)
    results = json.loads((out / "pipeline_results.json").read_text())
    assert results["eval"]["test"]["total"] == 5
    assert len(probes[0]["trained"]) == len(probes[1]["trained"]) == 2  # one step of 2 per rank
