"""LoRA through peft, one adapter per role: what trains, what is saved, which role uses which."""
import pytest
import torch

from conftest import build_tiny
from lavis_sevila.models import SeViLA
from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.models.checkpoint import group_of

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "roles": ["answerer", "localizer"]}
QA = ["Question: what shape is the red object? Option A: circle. Option B: square.",
      "Question: what is blue? Option A: bar. Option B: ring. Option C: star."]
LOC = ["Question: what shape is the red object? Options: (circle. square. )",
       "Question: what is blue? Options: (bar. ring. star. )"]


def batch():
    g = torch.Generator().manual_seed(0)
    return {"video": torch.randn(2, 4, 3, 32, 32, generator=g), "qa_input": QA, "loc_input": LOC,
            "qa_output": ["Option B", "Option C"], "answer_idx": [1, 2], "question_id": ["a", "b"],
            "frame_labels": torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]])}


def file_groups(model, names):
    return {group_of(model.checkpoint_layout.file_key(n)) for n in names}


@torch.no_grad()
def scores(model, feats):
    return model.frame_logits(feats, LOC).yes, model.answer_logits(feats[:, :2], QA)


def test_the_stage_trains_its_role_and_its_adapter_only():
    model = build_tiny(lora=LORA)
    names = model.set_stage("finetune_answerer")
    assert file_groups(model, names) == {"ln_vision", "Qformer", "query_tokens", "t5_proj", "lora"}
    in_llm = [n for n, p in model.t5_model.named_parameters() if p.requires_grad]
    assert in_llm and all(".lora_" in n and ".answerer." in n for n in in_llm)  # in the LLM only its adapter trains
    assert not any(n.startswith("t5_model.") for n in names)
    assert not any("lora" in n for n, _ in model.visual_encoder.named_parameters())  # the ViT is never adapted
    targets = {n.rsplit(".", 3)[0].rsplit(".", 1)[-1] for n, _ in model.t5_model.named_parameters() if "lora_A" in n}
    assert targets == {"q", "v"}
    assert file_groups(model, model.set_stage("refine_localizer")) == {
        "ln_vision_loc", "Qformer_loc", "query_tokens_loc", "t5_proj_loc", "lora_loc"}


@pytest.mark.parametrize("model_type", ["tiny_opt", "tiny_llama"])
def test_decoder_only_families_adapt_q_proj_and_v_proj(model_type):
    torch.manual_seed(0)
    model = SeViLA.from_model_type(model_type, lora=LORA)
    llm = getattr(model, model.llm.state_key)
    targets = {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n, _ in llm.named_parameters() if ".lora_A." in n}
    assert targets == {"q_proj", "v_proj"}
    assert {"lora", "lora_loc"} <= {group_of(k) for k in ckpt.file_state(model)}


def test_the_base_llm_keeps_the_authors_key_names():
    plain, adapted = build_tiny(), build_tiny(lora=LORA)
    base = lambda m: {k for k in ckpt.file_state(m) if not k.startswith("lora")}  # noqa: E731
    assert base(plain) == base(adapted)
    assert not any("base_layer" in k for k in ckpt.file_state(adapted))
    assert any(".base_layer." in k for k in adapted.state_dict())  # inside the model, peft's names


@torch.no_grad()
def test_each_role_runs_its_own_adapter():
    model = build_tiny(lora=LORA)
    feats = model.encode_frames(batch()["video"])
    yes0, answer0 = scores(model, feats)
    for name, param in model.t5_model.named_parameters():  # B = 0 at init: move the answerer's adapter only
        if ".lora_B.answerer." in name:
            param.normal_(0, 0.5)
    yes1, answer1 = scores(model, feats)
    assert torch.equal(yes1, yes0)
    assert not torch.allclose(answer1, answer0, atol=1e-4)
    for name, param in model.t5_model.named_parameters():
        if ".lora_B.localizer." in name:
            param.normal_(0, 0.5)
    yes2, answer2 = scores(model, feats)
    assert not torch.allclose(yes2, yes1, atol=1e-4)
    assert torch.equal(answer2, answer1)


@torch.no_grad()
def test_a_role_without_an_adapter_runs_the_base_llm():
    model = build_tiny(lora={**LORA, "roles": ["answerer"]})
    feats = model.encode_frames(batch()["video"])
    yes0, _ = scores(model, feats)
    for name, param in model.t5_model.named_parameters():
        if ".lora_B." in name:
            param.normal_(0, 0.5)
    yes1, answer1 = scores(model, feats)
    assert torch.equal(yes1, yes0)
    assert {group_of(k) for k in ckpt.file_state(model)} >= {"lora"} and "lora_loc" not in {group_of(k) for k in ckpt.file_state(model)}


def _train_step(model, stage):
    names = set(model.set_stage(stage))
    before = {k: v.clone() for k, v in ckpt.file_state(model).items()}
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(batch())["loss"].backward()
    optimizer.step()
    model.eval()
    trained = set(names)  # checkpoint names
    after = ckpt.file_state(model)
    for key in after:
        if key not in trained:
            assert torch.equal(after[key], before[key]), f"{key} is frozen in {stage} but changed"
    return {group_of(k) for k in after if not torch.equal(after[k], before[k])}


def test_one_step_moves_the_role_and_its_adapter_and_nothing_else():
    model = build_tiny(lora=LORA)
    assert "lora" in _train_step(model, "finetune_answerer")
    moved = _train_step(model, "refine_localizer")
    assert "lora_loc" in moved and "lora" not in moved and "t5_model" not in moved


def test_checkpoint_holds_only_the_adapter_and_the_role_and_loads_back(tmp_path):
    model = build_tiny(lora=LORA)
    _train_step(model, "finetune_answerer")
    path = ckpt.save_checkpoint(tmp_path / "ft.pth", model, {"stage": "finetune_answerer"})
    payload = ckpt.read_checkpoint(path)
    groups = {group_of(k) for k in payload["model"]}
    assert groups == {"ln_vision", "Qformer", "query_tokens", "t5_proj", "lora"}
    assert not any(k.startswith("t5_model") for k in payload["model"])
    assert payload["manifest"]["lora"]["roles"] == ["answerer", "localizer"]
    assert "base LLM is not in this file" in payload["manifest"]["lora"]["contents"]
    fresh = build_tiny(lora=LORA, finetuned=[str(path)])
    feats = model.encode_frames(batch()["video"])
    assert torch.equal(scores(fresh, feats)[1], scores(model, feats)[1])
    for key, value in payload["model"].items():
        assert torch.equal(ckpt.file_state(fresh)[key], value), key
    with pytest.raises(ckpt.CheckpointError, match="lora"):  # an adapter file needs a LoRA model
        build_tiny(finetuned=[str(path)])


def test_lora_config_keys_and_roles_are_checked():
    with pytest.raises(ValueError, match=r"unknown key\(s\) model.lora.rank.*known"):
        build_tiny(lora={"rank": 4, "roles": ["answerer"]})
    with pytest.raises(ValueError, match="unknown role"):
        build_tiny(lora={"roles": ["asker"]})
    with pytest.raises(ValueError, match="freeze_llm"):
        build_tiny(lora=LORA, freeze_llm=False)
    assert build_tiny(lora=None).lora is None
