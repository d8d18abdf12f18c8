"""The run settings and the entry point's checks: one settings object, every key read,
options as key=value, max_steps in optimizer steps, and the process group's lifetime."""
import types

import pytest
import torch
import torch.distributed as dist

from lavis_sevila import cli
from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.runners import distributed
from lavis_sevila.runners.settings import RunSettings
from training_helpers import PROJECT, make_data, stage_options


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"), train=8, val=0, test=2)


@pytest.mark.parametrize("option", ["model.num_keyframes", "=4", " run.seed=1", ""])
def test_an_option_without_key_and_value_is_refused_naming_it(option):
    with pytest.raises(ValueError, match="is not key=value"):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), [option])


def test_an_unknown_run_key_is_refused_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"run\.log_frq.*known: .*accum_grad_iters.*warmup_steps"):
        RunSettings.from_config({"task": "videoqa", "log_frq": 10})


def test_a_task_key_of_the_other_task_is_refused():
    with pytest.raises(ValueError, match="run.inference is an option of the videoqa task"):
        RunSettings.from_config({"task": "moment_retrieval", "inference": "chain"})
    assert RunSettings.from_config({"task": "videoqa", "inference": "uniform"}).task_options() == {"inference": "uniform"}
    assert RunSettings.from_config({"task": "moment_retrieval"}).task_options() == {"span_threshold": 6}


def test_max_steps_counts_optimizer_steps(data, tmp_path):
    """With accum_grad_iters=2, max_steps=2 is 4 batches (LAVIS's meaning of a step)."""
    out = tmp_path / "run"
    cli.run(str(PROJECT / "finetune_answerer.yaml"),
            stage_options(data, out, "finetune_answerer", "run.batch_size_train=1", "run.accum_grad_iters=2",
                          "run.max_steps=2", "run.test_splits=[]", "run.max_epoch=5"))
    assert torch.load(out / "checkpoint_final.pth", weights_only=True)["manifest"]["iteration"] == 4


def test_an_evaluation_only_config_does_not_train(data, tmp_path):
    options = stage_options(data, tmp_path / "run", "finetune_answerer", "run.train_splits=[]")
    with pytest.raises(ValueError, match="run.train_splits is empty"):
        cli.run(str(PROJECT / "finetune_answerer.yaml"), options)


def test_one_process_group_for_nested_runs_destroyed_once_even_on_error():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="boom"):
        with distributed.process_group():
            distributed.init_distributed("cpu", need_group=True)  # in-process store: no port
            group = dist.group.WORLD
            with distributed.process_group():  # a pipeline step joins the same group
                distributed.init_distributed("cpu", need_group=True)
                assert dist.group.WORLD is group
            assert dist.is_initialized()  # the inner block does not destroy it
            raise RuntimeError("boom")
    assert not dist.is_initialized()


def test_a_group_made_by_the_caller_is_left_alone():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with distributed.process_group():
            distributed.init_distributed("cpu")
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_zero_partitions_must_match_the_checkpoint_stamp(tmp_path, monkeypatch):
    """A kill between files can never pair a partition with another iteration's weights."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from lavis_sevila.runners.runner_deepspeed import DeepSpeedRunner

    fake = types.SimpleNamespace(zero_stage=2, dist=distributed.DistInfo(), output_dir=tmp_path)
    fake.shard_path = types.MethodType(DeepSpeedRunner.shard_path, fake)
    payload = {"zero_stage": 2, "zero_stamp": 8}
    with pytest.raises(ckpt.CheckpointError, match="iter8.pth is missing"):
        DeepSpeedRunner.load_optimizer_state(fake, payload)
    ckpt.atomic_save({"stamp": 6, "rank": 0, "world_size": 1, "optimizer": {}}, fake.shard_path(0, 8))
    with pytest.raises(ckpt.CheckpointError, match="'stamp': 6"):
        DeepSpeedRunner.load_optimizer_state(fake, payload)
    with pytest.raises(ckpt.CheckpointError, match="no ZeRO partition set"):
        DeepSpeedRunner.load_optimizer_state(fake, {"zero_stage": 2})


def test_checkpoint_writes_leave_no_partial_file(tmp_path):
    path = ckpt.atomic_save({"a": torch.zeros(2)}, tmp_path / "x.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))
    with pytest.raises(Exception):
        ckpt.atomic_save({"bad": lambda: 0}, tmp_path / "y.pth")  # unpicklable: nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]


def test_a_checkpoint_write_on_a_full_disk_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from lavis_sevila.diskspace import NoSpaceLeft

    def full(payload, handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    target = tmp_path / "checkpoint_last.pth"
    with pytest.raises(NoSpaceLeft, match=f"no space left on device while writing {target}"):
        ckpt.atomic_save({"a": 1}, target)
    assert list(tmp_path.iterdir()) == []
