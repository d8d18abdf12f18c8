"""Merging a localizer checkpoint and an answerer checkpoint (models/merge.py)."""
from __future__ import annotations

import pytest
import torch
from conftest import build_tiny

from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.models import merge as M

LOC_GROUPS = {"ln_vision_loc", "Qformer_loc", "query_tokens_loc", "t5_proj_loc"}
ANS_GROUPS = {"ln_vision", "Qformer", "query_tokens", "t5_proj"}


def _noisy(model, seed: int, groups: set[str]) -> dict[str, torch.Tensor]:
    """The model's state with every float tensor of ``groups`` perturbed (distinct per source)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ckpt.file_state(model).items():
        if ckpt.group_of(key) in groups and value.is_floating_point():
            value = value + torch.randn(value.shape, generator=generator)
        state[key] = value.clone()
    return state


@pytest.fixture(scope="module")
def model():
    return build_tiny()


@pytest.fixture
def files(model, tmp_path):
    """Two full SeViLA files on one backbone, every role group different between them."""
    roles = LOC_GROUPS | ANS_GROUPS
    loc, ans = _noisy(model, 1, roles), _noisy(model, 2, roles)
    paths = tmp_path / "loc.pth", tmp_path / "ans.pth"
    torch.save({"model": loc}, paths[0])
    torch.save({"model": ans}, paths[1])
    return loc, ans, paths


def test_roles_come_from_their_own_files(model, files, tmp_path):
    loc, ans, (loc_path, ans_path) = files
    out = tmp_path / "merged.pth"
    report = M.merge_files(loc_path, ans_path, out)
    merged = ckpt.read_checkpoint(out)["model"]  # manifest matches the tensors
    assert set(merged) == set(ckpt.file_state(model))
    for key, value in merged.items():
        group = ckpt.group_of(key)
        source = loc if group in LOC_GROUPS else ans
        assert torch.equal(value, source[key]), key
    assert report.taken["Qformer_loc"] == "localizer" and report.taken["Qformer"] == "answerer"
    assert report.taken["t5_model"] == "both (equal)"
    assert report.ignored == {"localizer": sorted(ANS_GROUPS), "answerer": sorted(LOC_GROUPS)}
    target = build_tiny(seed=5)
    ckpt.load_into(target, merged, source=str(out))  # loads into a model, checked
    assert torch.equal(target.roles["localizer"].query_tokens, loc["query_tokens_loc"])
    assert torch.equal(target.roles["answerer"].query_tokens, ans["query_tokens"])


def test_different_backbones_are_refused_unless_chosen(model, files):
    loc, ans, _ = files
    other = dict(ans, **{"t5_model.lm_head.weight": ans["t5_model.lm_head.weight"] + 1})
    with pytest.raises(M.MergeError, match=r"t5_model differs.*lm_head.*--allow-backbone-from"):
        M.merge_states(loc, other)
    merged, report = M.merge_states(loc, other, allow_backbone_from="answerer")
    assert torch.equal(merged["t5_model.lm_head.weight"], other["t5_model.lm_head.weight"])
    assert report.backbone_differs == ["t5_model"] and report.taken["t5_model"] == "answerer"
    merged, _ = M.merge_states(loc, other, allow_backbone_from="localizer")
    assert torch.equal(merged["t5_model.lm_head.weight"], loc["t5_model.lm_head.weight"])


def test_backbone_absent_from_one_file_is_taken_from_the_other(model, files, tmp_path):
    loc, ans, _ = files
    trained = build_tiny(seed=3)
    trained.set_stage("refine_localizer")
    path = ckpt.save_checkpoint(tmp_path / "refined.pth", trained, {"stage": "refine_localizer"})
    role_only = ckpt.load_state_file(path)  # a training checkpoint: the localizer groups only
    assert {ckpt.group_of(k) for k in role_only} == LOC_GROUPS
    merged, report = M.merge_states(role_only, ans)
    assert report.taken["visual_encoder"] == "answerer" and report.taken["t5_model"] == "answerer"
    assert torch.equal(merged["Qformer_loc.bert.embeddings.LayerNorm.weight"],
                       role_only["Qformer_loc.bert.embeddings.LayerNorm.weight"])
    with pytest.raises(M.MergeError, match=r"no answerer group\(s\) ln_vision, Qformer"):
        M.merge_states(loc, role_only)


def test_unknown_keys_and_mixed_architectures_are_refused(files):
    loc, ans, _ = files
    with pytest.raises(M.MergeError, match=r"outside the SeViLA layout.*opt_model\.x"):
        M.merge_states(dict(loc, **{"opt_model.x": torch.zeros(1)}), ans)
    smaller = dict(ans, query_tokens=torch.zeros(1, 2, 48))
    with pytest.raises(M.MergeError, match="different architectures"):
        M.merge_states(loc, smaller)


def test_command(files, tmp_path, capsys):
    loc, ans, (loc_path, ans_path) = files
    out = tmp_path / "c.pth"
    assert M.main(["--localizer", str(loc_path), "--answerer", str(ans_path), "--output", str(out)]) == 0
    assert "Qformer_loc <- localizer" in capsys.readouterr().out
    bad = tmp_path / "bad.pth"
    torch.save({"model": dict(ans, **{"t5_model.lm_head.weight": ans["t5_model.lm_head.weight"] * 2})}, bad)
    assert M.main(["--localizer", str(loc_path), "--answerer", str(bad), "--output", str(tmp_path / "d.pth")]) == 2
    assert "t5_model differs" in capsys.readouterr().err
    assert not (tmp_path / "d.pth").exists() and not list(tmp_path.glob("*.part"))
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": loc, "evil": object()}, pickled)
    assert M.main(["--localizer", str(pickled), "--answerer", str(ans_path), "--output", str(out)]) == 2
    assert "weights-only" in capsys.readouterr().err


def test_the_family_comes_from_the_projection_names():
    from lavis_sevila.models import SeViLA

    torch.manual_seed(0)
    opt = ckpt.file_state(SeViLA.from_model_type("tiny_opt"))
    merged, report = M.merge_states(opt, opt)
    assert report.taken["opt_model"] == "both (equal)" and report.taken["opt_proj_loc"] == "localizer"
    assert set(merged) == set(opt)
    t5 = {k: v for k, v in ckpt.file_state(build_tiny()).items() if k.startswith("t5_proj")}
    with pytest.raises(M.MergeError, match="one LLM family"):
        M.merge_states({**opt, **t5}, opt)
