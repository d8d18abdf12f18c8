"""The optimizer sees the same parameters, in the same order, with the same weight decay,
whatever our module tree calls them.

The counts below were measured on the flat-attribute model (before the roles became
modules, commit f05b364) with the same code path (runner_sevila's param_groups); the
roles-as-modules tree must give exactly these.
"""
import types

import pytest
import torch

from lavis_sevila.models import SeViLA
from lavis_sevila.models.checkpoint import file_state
from lavis_sevila.runners.runner_sevila import SeViLARunner

LORA_BOTH = {"r": 4, "alpha": 8, "dropout": 0.0, "roles": ["answerer", "localizer"]}
LORA_ANSWERER = {**LORA_BOTH, "roles": ["answerer"]}
UNFROZEN = {"freeze_vit": False, "freeze_llm": False}

# (model type, overrides, stage) -> (decay tensors, no-decay tensors, decay numel, no-decay numel)
MEASURED = {
    ("tiny", "plain", "finetune_answerer"): (18, 31, 48576, 1584),
    ("tiny", "plain", "refine_localizer"): (18, 31, 48576, 1584),
    ("tiny_opt", "plain", "pretrain_localizer"): (18, 31, 48576, 1584),
    ("tiny_llama", "plain", "answer_uniform"): (18, 31, 48576, 1584),
    ("tiny", "lora_both", "finetune_answerer"): (42, 31, 53184, 1584),
    ("tiny", "lora_both", "refine_localizer"): (42, 31, 53184, 1584),
    ("tiny_llama", "lora_answerer", "finetune_answerer"): (26, 31, 50112, 1584),
    ("tiny_llama", "lora_answerer", "refine_localizer"): (18, 31, 48576, 1584),
    ("tiny", "unfrozen", "pretrain_backbone"): (63, 55, 219936, 2816),
    ("tiny_opt", "unfrozen", "pretrain_backbone"): (40, 63, 233184, 3264),
}
OVERRIDES = {"plain": {}, "lora_both": {"lora": LORA_BOTH}, "lora_answerer": {"lora": LORA_ANSWERER},
             "unfrozen": UNFROZEN}


def _groups(model):
    runner = types.SimpleNamespace(model=model, settings=types.SimpleNamespace(weight_decay=0.05))
    runner.trainable = lambda: SeViLARunner.trainable(runner)
    return runner.trainable(), SeViLARunner.param_groups(runner)


@pytest.mark.parametrize("model_type,overrides,stage", sorted(MEASURED))
def test_decay_and_no_decay_sets_are_the_measured_ones(model_type, overrides, stage):
    torch.manual_seed(0)
    model = SeViLA.from_model_type(model_type, **OVERRIDES[overrides])
    model.set_stage(stage)
    trainable, (decay, no_decay) = _groups(model)
    counts = (len(decay["params"]), len(no_decay["params"]),
              sum(p.numel() for p in decay["params"]), sum(p.numel() for p in no_decay["params"]))
    assert counts == MEASURED[(model_type, overrides, stage)]
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    name = {id(p): n for n, p in trainable}
    # LAVIS's rule, on the authors' names: what the authors' code would decay
    for param in no_decay["params"]:
        n = name[id(param)]
        assert param.ndim < 2 or "bias" in n or "ln" in n or "bn" in n, n
    for param in decay["params"]:
        n = name[id(param)]
        assert param.ndim >= 2 and not any(s in n for s in ("bias", "ln", "bn")), n
    # every trained parameter is in exactly one group, and only those
    assert sorted(map(id, decay["params"] + no_decay["params"])) == sorted(id(p) for p in model.parameters()
                                                                           if p.requires_grad)


def test_the_optimizer_takes_parameters_in_the_authors_order():
    """ZeRO partitions and saved optimizer states are laid out in this order."""
    torch.manual_seed(0)
    model = SeViLA.from_model_type("tiny", **UNFROZEN)
    model.set_stage("pretrain_backbone")
    names = [n for n, _ in model.trainable_parameters()]
    in_file = [k for k in file_state(model) if k in set(names)]
    assert names == in_file
    assert names[0] == "query_tokens" and names[1].startswith("visual_encoder.")  # as the flat model listed them
    decay, no_decay = _groups(model)[1]
    assert {id(p) for p in decay["params"]}.isdisjoint(id(p) for p in no_decay["params"])
    assert "ln_vision.weight" in names and "t5_proj.weight" in names
