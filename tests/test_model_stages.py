"""What each stage trains, that frozen means frozen, and the stage losses."""
import pytest
import torch
import torch.nn.functional as F

from conftest import build_tiny
from lavis_sevila.models.checkpoint import file_state, group_of
from lavis_sevila.models.stages import Stage

ANSWERER = {"ln_vision", "Qformer", "query_tokens", "t5_proj"}
LOCALIZER = {g + "_loc" for g in ANSWERER}
EXPECTED = {
    Stage.PRETRAIN_BACKBONE: ANSWERER,
    Stage.PRETRAIN_LOCALIZER: LOCALIZER,
    Stage.REFINE_LOCALIZER: LOCALIZER,
    Stage.FINETUNE_ANSWERER: ANSWERER,
    Stage.ANSWER_UNIFORM: ANSWERER,
    Stage.INFER: set(),
}


def batch(frames=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(2, frames, 3, 32, 32, generator=g),
        "qa_input": ["Question: what shape is the red object? Option A: circle. Option B: square.",
                     "Question: what is blue? Option A: bar. Option B: ring. Option C: star."],
        "loc_input": ["Question: what shape is the red object? Options: (circle. square. )",
                      "Question: what is blue? Options: (bar. ring. star. )"],
        "qa_output": ["Option B", "Option C"],
        "answer_idx": [1, 2],
        "question_id": ["q0", "q1"],
        "frame_labels": torch.tensor([[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 1]])[:, :frames],
        # stage 0 (pretrain_backbone): one frame and a free-text answer per sample
        "image": torch.randn(2, 1, 3, 32, 32, generator=g),
        "text_input": ["What colour is the circle?", "Is there a red bar in the frame?"],
        "text_output": ["red", "no"],
    }


def file_group(model, name):
    """The checkpoint group (authors' layout) of a parameter named as the model names it."""
    return group_of(model.checkpoint_layout.file_key(name))


def trained_groups(model):
    return {file_group(model, n) for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("stage", list(Stage))
def test_each_stage_trains_exactly_its_role(stage):
    model = build_tiny()
    names = model.set_stage(stage)
    assert trained_groups(model) == EXPECTED[stage]
    assert {group_of(n) for n in names} == EXPECTED[stage]
    # the authors' freeze set requires_grad on the projection module: ours reaches every parameter
    for name, param in model.named_parameters():
        if file_group(model, name) in ("t5_proj", "t5_proj_loc") and file_group(model, name) not in EXPECTED[stage]:
            assert not param.requires_grad, name


def test_unfrozen_vit_and_llm_flags_add_them():
    model = build_tiny(freeze_vit=False, freeze_llm=False)
    model.set_stage("finetune_answerer")
    assert trained_groups(model) == ANSWERER | {"visual_encoder", "t5_model"}
    model.train()
    assert model.visual_encoder.training
    model.set_stage("infer")
    assert trained_groups(model) == set()
    model.train()
    assert not model.visual_encoder.training, "a frozen ViT stays in eval mode"


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.INFER])
def test_frozen_weights_are_bit_identical_after_an_optimizer_step(stage):
    model = build_tiny()
    model.set_stage(stage)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    loss = model(batch())["loss"]
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained"
    assert {file_group(model, n) for n in changed} <= EXPECTED[stage]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(torch.equal(dict(model.named_parameters())[n], before[n]) for n in frozen)


def test_infer_stage_refuses_to_train():
    with pytest.raises(RuntimeError, match="infer"):
        build_tiny()(batch())


def test_localizer_loss_is_mean_token_cross_entropy_on_yes_no():
    model = build_tiny()
    samples = batch()
    feats = model.encode_frames(samples["video"])
    labels = samples["frame_labels"].bool()
    loss = model.localizer_loss(feats, samples["loc_input"], labels)
    inputs = model._single_frame_inputs("localizer", feats, samples["loc_input"])
    tok = model.llm.tokenizer
    rows = [tok("yes" if f else "no").input_ids for f in labels.reshape(-1).tolist()]  # 2 tokens each, EOS included
    targets = torch.tensor(rows)
    out = model.t5_model(inputs_embeds=inputs.embeds, attention_mask=inputs.mask, labels=targets)
    manual = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), targets.reshape(-1))
    assert torch.allclose(loss, manual, atol=1e-5)


@pytest.mark.parametrize("model_type", ["tiny", "tiny_opt"])
def test_localizer_loss_in_chunks_equals_one_call_loss_and_gradients(model_type):
    """Chunks of rows (5 of 12, each padded to its own longest text) give the one-call mean."""
    from lavis_sevila.models import SeViLA

    samples = batch()
    labels = samples["frame_labels"].bool()
    results = []
    for chunk in (None, 5):
        torch.manual_seed(0)
        model = SeViLA.from_model_type(model_type, localizer_chunk_size=chunk).eval()
        model.set_stage("refine_localizer")
        feats = model.encode_frames(samples["video"])
        loss = model.localizer_loss(feats, samples["loc_input"], labels)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.roles["localizer"].named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert torch.allclose(whole, chunked, rtol=1e-5, atol=1e-6)
    assert whole_grads.keys() == chunked_grads.keys() and len(whole_grads) > 0
    for name, grad in whole_grads.items():
        assert torch.allclose(grad, chunked_grads[name], rtol=1e-4, atol=1e-6), name


def test_pseudo_labels_follow_the_rule_frame_by_frame():
    model = build_tiny(seed=3)
    samples = batch()
    feats = model.encode_frames(samples["video"])
    labels = model.pseudo_labels(feats, samples["qa_input"], samples["qa_output"])
    tok = model.llm.tokenizer
    letters = list(model.token_ids.letters)
    for v in range(2):
        for t in range(feats.shape[1]):
            visual = model.role_tokens("answerer", feats[v, t : t + 1])
            inputs = model.layout.single_frame(visual, model.layout.tokenize([samples["qa_input"][v]], visual.device))
            target = torch.tensor([tok(samples["qa_output"][v]).input_ids])
            logits = model.t5_model(inputs_embeds=inputs.embeds, attention_mask=inputs.mask, labels=target).logits
            right = int(logits[0, 1, letters].argmax()) == samples["answer_idx"][v]
            assert bool(labels[v, t]) == right, (v, t)


def test_frozen_role_runs_in_eval_mode_and_restores_train_mode():
    model = build_tiny()
    model.set_stage("finetune_answerer")
    model.train()
    with model.frozen_role("localizer"):
        assert not torch.is_grad_enabled()
        assert not model.roles["localizer"].qformer.training and not model.t5_model.training
    assert model.roles["localizer"].qformer.training and model.t5_model.training
    # deterministic keyframes although the model is in train mode (dropout on elsewhere)
    feats = model.encode_frames(batch()["video"])
    picks = []
    for _ in range(3):
        with model.frozen_role("localizer"):
            picks.append(model.keyframes(feats, batch()["loc_input"])[1].yes)
    assert all(torch.equal(picks[0], p) for p in picks)


def test_orig_train_mode_flag_keeps_dropout_in_the_frozen_role():
    model = build_tiny(frozen_role_train_mode=True)
    model.set_stage("refine_localizer")
    model.train()
    with model.frozen_role("answerer"):
        assert model.roles["answerer"].qformer.training and model.t5_model.training


def test_pretrain_localizer_needs_frame_labels():
    model = build_tiny(stage="pretrain_localizer")
    samples = batch()
    samples["frame_labels"] = torch.full((2, 6), -1)
    with pytest.raises(ValueError, match="per-frame labels"):
        model(samples)


def test_pretrain_backbone_loss_is_token_cross_entropy_on_the_free_text_answer():
    model = build_tiny()
    model.set_stage("pretrain_backbone")
    model.eval()
    samples = batch()
    loss = model(samples)["loss"]
    feats = model.encode_frames(samples["image"])
    inputs = model._single_frame_inputs("answerer", feats, samples["text_input"])
    target = model.layout.targets(samples["text_output"], feats.device)
    logits = model.llm.teacher_forced(inputs, target.ids, target.mask).logits
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.ids.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-6)
    with pytest.raises(ValueError, match="single frames"):
        model({**samples, "image": samples["video"]})


def test_stage0_checkpoint_is_a_blip2_layout_start_for_both_roles(tmp_path):
    """Stage 0 with ViT and LLM training writes ViT, LLM and the answerer role; loaded as
    model.pretrained it fills them, and localizer_init: answerer copies the answerer role."""
    from lavis_sevila.models.checkpoint import save_checkpoint

    stage0 = build_tiny(freeze_vit=False, freeze_llm=False)
    stage0.set_stage("pretrain_backbone")
    path = save_checkpoint(tmp_path / "stage0.pth", stage0, {"stage": "pretrain_backbone"})
    saved = torch.load(path, weights_only=True)["model"]
    assert {group_of(k) for k in saved} == ANSWERER | {"visual_encoder", "t5_model"}
    later = build_tiny(pretrained=str(path), allow_random_init=False)
    loaded = file_state(later)
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
        twin = key.replace(group_of(key), group_of(key) + "_loc", 1)
        if group_of(key) in ANSWERER:
            assert torch.equal(loaded[twin], value), twin
