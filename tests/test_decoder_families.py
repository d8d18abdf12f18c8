"""Decoder-only LLM families (OPT, LLaMA): tiny random models, checked against naive forwards.

What is checked independently of the layout code: each expected score is recomputed from
a prompt built here by hand (token ids of the family's template pieces, the visual tokens,
one row at a time, no padding) and a plain ``module(inputs_embeds=...)`` forward.
"""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from lavis_sevila.models import SeViLA
from lavis_sevila.models.checkpoint import file_state, group_of
from lavis_sevila.models.layout import FRAME_PREFIX, video_prefix
from lavis_sevila.models.llm.decoder import positions
from lavis_sevila.models.stages import ANSWERER, LOCALIZER, Stage

FAMILIES = {"opt": "tiny_opt", "llama": "tiny_llama"}
LOC = ["Question: what shape is the red object? Options: (circle. square. )",
       "Question: what is blue? Options: (bar. ring. star. ) Does the frame provide the necessary details?"]
QA = ["Question: what shape is the red object? Option A: circle. Option B: square.",
      "Question: what is blue? Option A: bar. Option B: ring. Option C: star. Considering the information"]
TARGETS = ["Option B", "Option C"]


def build(family, seed=0, **overrides):
    torch.manual_seed(seed)
    return SeViLA.from_model_type(FAMILIES[family], **overrides).eval()


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def model(request):
    return build(request.param)


def feats_of(model, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return model.encode_frames(torch.randn(2, frames, 3, 32, 32, generator=g))


def ids(model, text):
    return model.llm.tokenizer(text, add_special_tokens=False).input_ids


def naive_prompt(model, role, frame_feats, text, video=False):
    """One row by hand: BOS, head, (Frame prefix, <Img>, visual, </Img>) per frame, text, tail.

    ``video``: the answerer's video layout ("Frame i: "), else the image layout ("Frame: ").
    """
    t = model.llm.template
    embed = lambda xs: model.llm.embed(torch.tensor([xs]))[0]  # noqa: E731
    pieces = [embed([model.llm.tokenizer.bos_token_id] + ids(model, t.head))]
    for i, frame in enumerate(frame_feats):
        prefix = video_prefix(i + 1) if video else FRAME_PREFIX
        pieces.append(embed(ids(model, prefix + t.image_open)))
        pieces.append(model.role_tokens(role, frame[None])[0])
        if t.image_close:
            pieces.append(embed(ids(model, t.image_close)))
    pieces.append(embed(ids(model, text)))
    if t.tail:
        pieces.append(embed(ids(model, t.tail)))
    return torch.cat(pieces)[None]


def last_logits(model, embeds):
    return model.llm.module(inputs_embeds=embeds).logits[0, -1]


@torch.no_grad()
def test_localizer_score_is_the_naive_next_token_logit_of_yes(model):
    feats = feats_of(model)
    scores = model.frame_logits(feats, LOC)  # two texts of different lengths: padded batch
    for b in range(2):
        for t in range(feats.shape[1]):
            logits = last_logits(model, naive_prompt(model, LOCALIZER, feats[b, t : t + 1], LOC[b]))
            torch.testing.assert_close(scores.yes[b, t], logits[model.token_ids.yes], atol=2e-5, rtol=1e-5)
            torch.testing.assert_close(scores.no[b, t], logits[model.token_ids.no], atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_answerer_reads_the_letter_after_the_option_prefix(model):
    feats = feats_of(model, frames=2)
    got = model.answer_logits(feats, QA)  # video layout, 2 frames
    per_frame = model.answer_logits_per_frame(feats, QA)
    letters = list(model.token_ids.letters)
    option = [model.token_ids.option_prefix]
    for b in range(2):
        embeds = naive_prompt(model, ANSWERER, feats[b], QA[b], video=True)
        embeds = torch.cat([embeds, model.llm.embed(torch.tensor([option]))], dim=1)
        torch.testing.assert_close(got[b], last_logits(model, embeds)[letters], atol=2e-5, rtol=1e-5)
        for t in range(2):
            embeds = naive_prompt(model, ANSWERER, feats[b, t : t + 1], QA[b])
            embeds = torch.cat([embeds, model.llm.embed(torch.tensor([option]))], dim=1)
            torch.testing.assert_close(per_frame[b, t], last_logits(model, embeds)[letters], atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_left_and_right_padding_give_the_same_scores(model):
    feats = feats_of(model)
    text = model.layout.tokenize(LOC, feats.device).repeat(feats.shape[1])
    visual = model.role_tokens(LOCALIZER, feats.flatten(0, 1))
    left = model.layout.single_frame(visual, text)
    assert not bool(left.mask.all()), "the batch must hold padding for this test to mean anything"
    assert bool(left.mask[:, -1].all())
    (ours,) = model.llm.greedy_step_logits(left, steps=1)
    # the same rows right-padded: real tokens first, logits gathered at each row's last real token
    order = torch.argsort(1 - left.mask, dim=1, stable=True)
    embeds = torch.gather(left.embeds, 1, order[..., None].expand_as(left.embeds))
    mask = torch.gather(left.mask, 1, order)
    logits = model.llm.module(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask)).logits
    right = logits[torch.arange(len(mask)), mask.sum(dim=1) - 1]
    torch.testing.assert_close(ours, right, atol=2e-5, rtol=1e-5)
    # and each row alone (no padding at all) scores the same as in the padded batch
    for row in (0, len(mask) - 1):
        alone = model.layout.single_frame(visual[row : row + 1], text.rows(row, row + 1))
        torch.testing.assert_close(model.llm.greedy_step_logits(alone, 1)[0][0], ours[row], atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_teacher_forced_loss_masks_the_prompt_and_logits_are_target_aligned(model):
    feats = feats_of(model, frames=1)
    inputs = model._single_frame_inputs(ANSWERER, feats, QA)
    target = model.layout.targets(TARGETS, feats.device)
    out = model.llm.teacher_forced(inputs, target.ids, target.mask)
    total, count = 0.0, 0
    for b in range(2):
        tgt = ids(model, model.llm.target_lead + TARGETS[b]) + [model.llm.tokenizer.eos_token_id]
        embeds = torch.cat([naive_prompt(model, ANSWERER, feats[b], QA[b]), model.llm.embed(torch.tensor([tgt]))], dim=1)
        logits = model.llm.module(inputs_embeds=embeds).logits[0, -len(tgt) - 1 : -1]
        torch.testing.assert_close(out.logits[b, : len(tgt)], logits, atol=2e-5, rtol=1e-5)
        total += F.cross_entropy(logits, torch.tensor(tgt), reduction="sum")
        count += len(tgt)
    torch.testing.assert_close(out.loss, total / count, atol=1e-5, rtol=1e-5)
    # the reverse chain reads the letter at its target position
    assert model.token_ids.letter_index == 1
    labels = model.pseudo_labels(feats, QA, TARGETS)
    letters = out.logits[:, 1, list(model.token_ids.letters)].argmax(-1)
    assert labels[:, 0].tolist() == (letters == torch.tensor([1, 2])).tolist()


def test_state_keys_are_the_family_layout(model):
    family = model.llm.family
    groups = {group_of(k) for k in file_state(model)}
    assert {f"{family}_model", f"{family}_proj", f"{family}_proj_loc"} <= groups
    assert not any(g.startswith("t5") for g in groups)


def _batch(frames=4):
    g = torch.Generator().manual_seed(1)
    return {
        "video": torch.randn(2, frames, 3, 32, 32, generator=g), "qa_input": QA, "loc_input": LOC,
        "qa_output": TARGETS, "answer_idx": [1, 2], "question_id": ["q0", "q1"], "num_options": [2, 3],
        "frame_labels": torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]]),
        # stage 0 (pretrain_backbone) reads single frames with a free-text answer
        "image": torch.randn(2, 1, 3, 32, 32, generator=g), "text_input": ["Is there a red circle?"] * 2,
        "text_output": ["yes", "no"],
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_both_chains_and_every_mode_predict(family):
    model = build(family, num_keyframes=2)
    batch = _batch()
    for mode in ("chain", "chain_single", "uniform", "per_frame", "localize"):
        records = model.predict(batch, mode=mode)
        assert len(records) == 2
        if mode != "localize":
            assert all(0 <= r["prediction"] < n for r, n in zip(records, batch["num_options"]))
    labels = model.pseudo_labels(model.encode_frames(batch["video"]), QA, TARGETS, torch.tensor([2, 3]))
    assert labels.shape == (2, 4) and labels.dtype == torch.bool


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.INFER])
def test_one_training_step_moves_only_the_trained_role(family, stage):
    model = build(family, num_keyframes=2)
    names = set(model.set_stage(stage))
    role = "_loc" if stage.trained_role == LOCALIZER else ""
    assert {group_of(n) for n in names} == {g + role for g in ("ln_vision", "Qformer", "query_tokens", f"{family}_proj")}
    before = {k: v.clone() for k, v in file_state(model).items()}
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    loss = model(_batch())["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    after = file_state(model)
    moved = {group_of(k) for k in after if not torch.equal(after[k], before[k])}
    for key in after:
        if key not in names:
            assert torch.equal(after[key], before[key]), f"{key} is frozen in {stage.value} but changed"
    assert moved and moved <= {group_of(n) for n in names}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_tokenizer_is_built_offline_and_reproducibly(family, tmp_path):
    from lavis_sevila.models.llm import family_class
    from lavis_sevila.models.tokenizer import build_tiny_llama_tokenizer, build_tiny_opt_tokenizer, derive_token_ids

    builder = {"opt": build_tiny_opt_tokenizer, "llama": build_tiny_llama_tokenizer}[family]
    a, b = builder(tmp_path / "a"), builder(tmp_path / "b")
    cls = family_class(family)
    ta, tb = cls.load_tokenizer(str(a)), cls.load_tokenizer(str(b))
    text = "Question: what colour is the zzz? Option A: red"
    assert ta(text).input_ids == tb(text).input_ids
    derived = derive_token_ids(ta, cls.target_lead)
    assert ids_of(ta, cls.target_lead + "yes") == [derived.yes]
    assert ids_of(ta, cls.target_lead + "Option C") == [derived.option_prefix, derived.letters[2]]
    assert ta.pad_token_id is not None and ta.pad_token_id != ta.eos_token_id


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("model_type,family,proj", [("pretrain_opt2.7b", "opt", "opt_proj"),
                                                    ("minigpt4_vicuna7b", "llama", "llama_proj")])
def test_real_model_types_name_their_sources(model_type, family, proj):
    from omegaconf import OmegaConf

    from lavis_sevila.models.config import SeViLAConfig

    raw = OmegaConf.to_container(OmegaConf.load(SeViLA.default_config_path(model_type)).model)
    assert raw["llm"]["family"] == family and raw["model_type"] == model_type
    if family == "opt":
        config = SeViLAConfig.from_dict(raw)
        assert config.pretrained == ["blip2_opt2.7b"]  # the registered source (models/pretrained.py)
        from lavis_sevila.models.pretrained import SOURCES

        assert SOURCES["blip2_opt2.7b"].location.endswith("/blip2_pretrained_opt2.7b.pth")
        assert config.llm.name_or_path == "facebook/opt-2.7b"
    else:  # Vicuna and MiniGPT-4's projection have no public URL: unset values are named
        with pytest.raises(ValueError, match=r"model.llm.name_or_path, model.tokenizer, model.pretrained\[1\] must be set"):
            SeViLAConfig.from_dict(raw)
        raw["llm"]["name_or_path"], raw["tokenizer"], raw["pretrained"][1] = "/v", "/v", "/m.pth"
        config = SeViLAConfig.from_dict(raw)
        assert config.allow_unexpected == ["t5_proj.*"] and len(config.pretrained) == 2
    from lavis_sevila.models.llm import family_class

    assert family_class(family).proj_key == proj


def test_minigpt4_layout_loads_from_stand_ins(tmp_path):
    """BLIP-2's file (ViT-free: ln_vision, Q-Former, query tokens, t5_proj) then MiniGPT-4's
    file (llama_proj only), as minigpt4_vicuna7b loads them: both roles get both."""
    donor = build("llama", seed=3)
    state = file_state(donor)
    shared = {k: v for k, v in state.items() if group_of(k) in ("ln_vision", "Qformer", "query_tokens")}
    shared["t5_proj.weight"], shared["t5_proj.bias"] = torch.randn(8, 48), torch.randn(8)  # a Flan-T5 projection
    torch.save({"model": shared}, tmp_path / "blip2.pth")
    torch.save({"model": {k: v for k, v in state.items() if group_of(k) == "llama_proj"}}, tmp_path / "minigpt4.pth")
    model = build("llama", seed=4, pretrained=[str(tmp_path / "blip2.pth"), str(tmp_path / "minigpt4.pth")],
                  allow_unexpected=["t5_proj.*"])
    for role in model.roles.values():
        assert torch.equal(role.proj.weight, donor.roles["answerer"].proj.weight)
        assert torch.equal(role.query_tokens, donor.roles["answerer"].query_tokens)
    with pytest.raises(Exception, match="t5_proj"):  # without the allowance the T5 projection is refused
        build("llama", pretrained=[str(tmp_path / "blip2.pth")])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from training_helpers import make_data

    return make_data(tmp_path_factory.mktemp("synthetic"))


def _run_stage(data, out, stage, model_type, *extra):
    from lavis_sevila import cli
    from lavis_sevila.models import checkpoint as ckpt
    from training_helpers import PROJECT, stage_options

    options = stage_options(data, out, stage, "run.max_steps=2", "model.freeze_vit=true", "model.freeze_llm=true",
                            f"model.model_type={model_type}", *extra)
    results = cli.run(str(PROJECT / f"{stage}.yaml"), options)
    assert results["train"]["iterations"] == 2
    return ckpt.read_checkpoint(out / "checkpoint_final.pth")


def test_the_synthetic_stage_runs_with_llama_and_lora_through_one_switch(synthetic, tmp_path):
    payload = _run_stage(synthetic, tmp_path / "ft", "finetune_answerer", "tiny_llama",
                         "model.lora={r: 4, alpha: 8, dropout: 0.0, roles: [answerer]}")
    assert set(payload["manifest"]["groups"]) == {"ln_vision", "Qformer", "query_tokens", "llama_proj", "lora"}


@pytest.mark.slow
@pytest.mark.parametrize("model_type,proj", [("tiny_opt", "opt_proj"), ("tiny_llama", "llama_proj")])
@pytest.mark.parametrize("stage", ["pretrain_localizer", "finetune_answerer", "refine_localizer"])
def test_every_synthetic_stage_runs_with_each_decoder_family(synthetic, tmp_path, model_type, proj, stage):
    payload = _run_stage(synthetic, tmp_path / stage, stage, model_type)
    suffix = "" if stage == "finetune_answerer" else "_loc"
    assert set(payload["manifest"]["groups"]) == {g + suffix for g in ("ln_vision", "Qformer", "query_tokens", proj)}


FREE_TEXT = ["a red circle on the left", "yes"]  # stage-0 style targets: different lengths


@contextlib.contextmanager
def video_frames(model, k):
    """``model.pretrain_video_frames`` set to k for a block (the tiny configs set 4)."""
    old = model.config.pretrain_video_frames
    model.config.pretrain_video_frames = k
    try:
        yield
    finally:
        model.config.pretrain_video_frames = old


@torch.no_grad()
def test_targets_of_different_lengths_end_with_eos_after_their_own_text(model):
    # LLaMA's tokenizer pads on the left by default; a target must still be its text, then
    # EOS, then padding, or stage 0 teaches EOS in place of a word (a bug this test caught)
    target = model.layout.targets(FREE_TEXT, torch.device("cpu"))
    eos = model.llm.tokenizer.eos_token_id
    for b, text in enumerate(FREE_TEXT):
        tgt = ids(model, model.llm.target_lead + text) + [eos]
        n = len(tgt)
        assert target.ids[b, :n].tolist() == tgt
        assert target.mask[b, :n].tolist() == [1] * n
        assert (target.ids[b, n:] == -100).all() and (target.mask[b, n:] == 0).all()


@torch.no_grad()
def test_stage0_loss_is_the_naive_loss_on_free_text_targets(model):
    # the pretrain_backbone loss on a padded batch equals the per-row naive teacher-forced
    # loss (prompt, then target + EOS, positions counted from the row's first real token)
    image = torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    feats = model.encode_frames(image)
    with video_frames(model, 0):  # the image layout alone (BLIP-2's stage)
        loss = SeViLA._loss_pretrain_backbone(model, {"image": image, "text_input": QA, "text_output": FREE_TEXT})["loss"]
    total, count = 0.0, 0
    for b in range(2):
        tgt = ids(model, model.llm.target_lead + FREE_TEXT[b]) + [model.llm.tokenizer.eos_token_id]
        embeds = torch.cat([naive_prompt(model, ANSWERER, feats[b], QA[b]), model.llm.embed(torch.tensor([tgt]))], dim=1)
        logits = model.llm.module(inputs_embeds=embeds).logits[0, -len(tgt) - 1 : -1]
        total += F.cross_entropy(logits, torch.tensor(tgt), reduction="sum")
        count += len(tgt)
    torch.testing.assert_close(loss, total / count, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stage0_video_layout_option_adds_the_repeated_frame_video_loss(model):
    # model.pretrain_video_frames = k: stage 0's loss is the mean of the image-layout loss and
    # the video-layout loss with the frame repeated k times (naive prompt built here by hand)
    image = torch.randn(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    samples = {"image": image, "text_input": QA, "text_output": FREE_TEXT}
    with video_frames(model, 0):
        plain = SeViLA._loss_pretrain_backbone(model, samples)["loss"]
    with video_frames(model, 3):
        both = SeViLA._loss_pretrain_backbone(model, samples)["loss"]
    feats = model.encode_frames(image)
    total, count = 0.0, 0
    for b in range(2):
        tgt = ids(model, model.llm.target_lead + FREE_TEXT[b]) + [model.llm.tokenizer.eos_token_id]
        prompt = naive_prompt(model, ANSWERER, feats[b].expand(3, -1, -1), QA[b], video=True)
        embeds = torch.cat([prompt, model.llm.embed(torch.tensor([tgt]))], dim=1)
        logits = model.llm.module(inputs_embeds=embeds).logits[0, -len(tgt) - 1 : -1]
        total += F.cross_entropy(logits, torch.tensor(tgt), reduction="sum")
        count += len(tgt)
    torch.testing.assert_close(both, (plain + total / count) / 2, atol=1e-5, rtol=1e-5)
