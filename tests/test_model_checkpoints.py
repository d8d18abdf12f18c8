"""Checkpoints: authors' layout, weights-only reading, loud strict loading, round trips."""
import collections

import pytest
import torch

from conftest import build_tiny
from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.models.convert import BLIP2_QFORMER_TEXT_PARTS

AUTHORS_GROUPS = {
    "visual_encoder", "ln_vision", "ln_vision_loc", "Qformer", "Qformer_loc", "query_tokens",
    "query_tokens_loc", "t5_proj", "t5_proj_loc", "t5_model",
}


def role_state(model, suffix):
    groups = {g + suffix for g in ("ln_vision", "Qformer", "query_tokens", "t5_proj")}
    return {k: v.clone() for k, v in ckpt.file_state(model).items() if ckpt.group_of(k) in groups}


def test_checkpoint_layout_is_the_authors(tiny_shared):
    keys = ckpt.file_state(tiny_shared).keys()
    assert {ckpt.group_of(k) for k in keys} == AUTHORS_GROUPS
    # the text-only Q-Former parts are removed, as in the authors' model
    assert not any(".cls." in k or "word_embeddings" in k or ".intermediate." in k for k in keys)
    assert "Qformer_loc.bert.encoder.layer.0.crossattention.self.key.weight" in keys
    assert "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight" in keys
    assert tiny_shared.roles["answerer"].query_tokens.shape == (1, 4, 48)


def test_roles_are_modules_and_every_key_converts_both_ways(tiny_shared):
    tree = tiny_shared.state_dict()
    assert {k.split(".")[0] for k in tree} == {"visual_encoder", "t5_model", "roles"}
    assert {k.split(".")[1] for k in tree if k.startswith("roles.")} == {"answerer", "localizer"}
    layout = tiny_shared.checkpoint_layout
    assert layout.file_key("roles.localizer.qformer.bert.embeddings.LayerNorm.weight") == (
        "Qformer_loc.bert.embeddings.LayerNorm.weight")
    assert layout.file_key("roles.answerer.query_tokens") == "query_tokens"
    assert layout.file_key("roles.localizer.proj.bias") == "t5_proj_loc.bias"
    assert layout.file_key("roles.answerer.ln.weight") == "ln_vision.weight"
    files = ckpt.file_state(tiny_shared)
    assert len(files) == len(tree) and all(layout.tree_key(layout.file_key(k)) == k for k in tree)
    assert all(layout.file_key(k) == k for k in files)  # a checkpoint name is kept as it is
    # the authors' order: query_tokens first (their own parameters), then their modules
    assert list(files)[:3] == ["query_tokens", "query_tokens_loc", next(iter(tree))]


def test_a_saved_model_state_dict_loads_as_a_checkpoint(tmp_path):
    source, target = build_tiny(seed=3), build_tiny(seed=4)
    tree = {k: v for k, v in source.state_dict().items() if k.startswith("roles.localizer.")}
    torch.save(tree, tmp_path / "tree.pth")
    report = target.load_checkpoint(str(tmp_path / "tree.pth"))
    assert set(report.loaded) == {"ln_vision_loc", "Qformer_loc", "query_tokens_loc", "t5_proj_loc"}
    assert torch.equal(target.roles["localizer"].qformer.bert.embeddings.LayerNorm.weight,
                       source.roles["localizer"].qformer.bert.embeddings.LayerNorm.weight)
    both = dict(tree, **{"query_tokens_loc": tree["roles.localizer.query_tokens"]})
    with pytest.raises(ckpt.CheckpointError, match="twice"):
        ckpt.load_into(target, both, source="x")


def test_training_checkpoint_round_trip_holds_only_what_trains(tmp_path):
    model = build_tiny(seed=1, stage="refine_localizer")
    with torch.no_grad():
        model.roles["localizer"].qformer.bert.embeddings.LayerNorm.weight.add_(0.5)
    path = ckpt.save_checkpoint(tmp_path / "c.pth", model, {"stage": "refine_localizer", "epoch": 3})
    payload = ckpt.read_checkpoint(path)
    assert payload["manifest"]["stage"] == "refine_localizer" and payload["manifest"]["epoch"] == 3
    assert set(payload["manifest"]["groups"]) == {"ln_vision_loc", "Qformer_loc", "query_tokens_loc", "t5_proj_loc"}
    trained = {n for n, _ in model.trainable_parameters()}
    assert trained <= set(payload["model"])
    assert set(payload["model"]) - trained == {"Qformer_loc.bert.embeddings.position_ids"}  # its buffer

    fresh = build_tiny(seed=2)
    report = fresh.load_checkpoint(str(path))
    assert "t5_model" in report.absent and "Qformer" in report.absent
    for key, value in payload["model"].items():
        assert torch.equal(ckpt.file_state(fresh)[key], value), key


def test_tampered_manifest_is_refused(tmp_path):
    model = build_tiny(stage="finetune_answerer")
    path = ckpt.save_checkpoint(tmp_path / "c.pth", model, {"stage": "finetune_answerer"})
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["model"]))
    payload["model"][key] = payload["model"][key].half()
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(ckpt.CheckpointError, match="manifest"):
        ckpt.read_checkpoint(tmp_path / "bad.pth")


class NotATensor:
    pass


def test_pickled_objects_are_never_unpickled(tmp_path, tiny):
    torch.save({"model": {"query_tokens": NotATensor()}}, tmp_path / "evil.pth")
    with pytest.raises(ckpt.CheckpointError, match="weights-only"):
        tiny.load_checkpoint(str(tmp_path / "evil.pth"))


def test_unexpected_keys_fail_unless_allowed(tmp_path):
    model = build_tiny()
    state = role_state(model, "")
    state["Qformer.cls.predictions.bias"] = torch.zeros(3)
    state["mystery.weight"] = torch.zeros(1)
    with pytest.raises(ckpt.CheckpointError, match=r"mystery \(1") as error:
        ckpt.load_into(model, state, source="x")
    assert "Qformer (1" in str(error.value)
    del state["mystery.weight"]
    report = ckpt.load_into(model, state, source="x", allow_unexpected=BLIP2_QFORMER_TEXT_PARTS)
    assert sum(len(v) for v in report.ignored.values()) == 1


def test_incomplete_groups_shapes_and_dtypes_fail(tiny):
    state = role_state(tiny, "_loc")
    partial = dict(state)
    partial.pop(next(k for k in partial if k.startswith("Qformer_loc.")))
    with pytest.raises(ckpt.CheckpointError, match="incomplete group"):
        ckpt.load_into(tiny, partial, source="x")
    wrong = dict(state, query_tokens_loc=torch.zeros(1, 5, 48))
    with pytest.raises(ckpt.CheckpointError, match="shape mismatch"):
        ckpt.load_into(tiny, wrong, source="x")
    ints = dict(state, query_tokens_loc=torch.zeros(1, 4, 48, dtype=torch.int64))
    with pytest.raises(ckpt.CheckpointError, match="dtype"):
        ckpt.load_into(tiny, ints, source="x")
    halves = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    report = ckpt.load_into(tiny, halves, source="x")
    assert report.cast and tiny.roles["localizer"].query_tokens.dtype == torch.float32


def test_groups_without_weights_fail_unless_random_init_is_allowed():
    with pytest.raises(ckpt.CheckpointError, match="no weights for"):
        build_tiny(allow_random_init=False)


def test_localizer_init_copies_the_answerer_after_pretrained(tmp_path):
    source = build_tiny(seed=5)
    blip2 = role_state(source, "")
    blip2["Qformer.cls.predictions.bias"] = torch.zeros(3)  # a stage-1 BLIP-2 file carries text parts
    torch.save({"model": blip2}, tmp_path / "blip2.pth")
    model = build_tiny(
        seed=6, pretrained=str(tmp_path / "blip2.pth"), allow_unexpected=list(BLIP2_QFORMER_TEXT_PARTS)
    )
    state = ckpt.file_state(model)
    for key, value in blip2.items():
        if key in state:
            group, _, rest = key.partition(".")
            twin = f"{group}_loc" + (f".{rest}" if rest else "")
            assert torch.equal(state[key], value) and torch.equal(state[twin], value), key
    assert model.weight_sources["Qformer_loc"] == "copy of Qformer"


def test_random_localizer_init_keeps_its_own_weights(tmp_path):
    source = build_tiny(seed=5)
    torch.save({"model": role_state(source, "")}, tmp_path / "blip2.pth")
    model = build_tiny(seed=6, pretrained=str(tmp_path / "blip2.pth"), localizer_init="random")
    assert not torch.equal(model.roles["localizer"].query_tokens, model.roles["answerer"].query_tokens)


def test_finetuned_checkpoints_apply_in_order(tmp_path):
    first, second = build_tiny(seed=7), build_tiny(seed=8)
    torch.save({"model": {**role_state(first, ""), **role_state(first, "_loc")}}, tmp_path / "a.pth")
    torch.save(role_state(second, "_loc"), tmp_path / "b.pth")  # a bare state dict works too
    model = build_tiny(seed=9, finetuned=[str(tmp_path / "a.pth"), str(tmp_path / "b.pth")])
    assert torch.equal(model.roles["answerer"].query_tokens, first.roles["answerer"].query_tokens)
    assert torch.equal(model.roles["localizer"].query_tokens, second.roles["localizer"].query_tokens)
    counts = collections.Counter(model.weight_sources.values())
    assert counts[str(tmp_path / "b.pth")] == 4
