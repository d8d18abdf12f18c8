"""The real loading path (hub/URL/local sources), exercised offline with local stand-ins."""
import subprocess
import sys

import pytest
import torch
from lavis.common.registry import registry
from omegaconf import OmegaConf

from conftest import build_tiny
from lavis_sevila.models import SeViLA
from lavis_sevila.models.checkpoint import file_state
from lavis_sevila.models.pretrained import resolve_file
from lavis_sevila.models.tokenizer import build_tiny_tokenizer
from lavis_sevila.models.vision import build_vision_encoder


def _tiny_sizes_on_the_real_config():
    """pretrain_flant5xl.yaml with tiny sizes: the code path the paper's model takes."""
    real = OmegaConf.load(SeViLA.default_config_path("pretrain_flant5xl")).model
    tiny = OmegaConf.load(SeViLA.default_config_path("tiny")).model
    for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "precision"):
        real.vision[key] = tiny.vision[key]
    real.qformer = tiny.qformer
    return real, tiny


def test_real_path_with_local_sources(tmp_path):
    real, tiny = _tiny_sizes_on_the_real_config()
    # stand-ins for EVA's ViT file (with one block more, as EVA-CLIP's), the Flan-T5 hub repo,
    # the tokenizer and BLIP-2's checkpoint, all written here
    donor = build_tiny(seed=11)
    tokenizer_dir = build_tiny_tokenizer(tmp_path / "tokenizer")
    bigger = OmegaConf.merge(tiny.vision, {"depth": tiny.vision.depth + 1, "weights": None})
    vit_state = build_vision_encoder(bigger).state_dict()
    torch.save(vit_state, tmp_path / "eva_vit.pth")
    donor.t5_model.save_pretrained(tmp_path / "flan-t5", safe_serialization=False)
    donor.llm.tokenizer.save_pretrained(tmp_path / "flan-t5")
    blip2 = {k: v for k, v in file_state(donor).items() if k.split(".")[0] in ("ln_vision", "Qformer", "query_tokens", "t5_proj")}
    torch.save({"model": blip2}, tmp_path / "blip2.pth")

    real.vision.weights = (tmp_path / "eva_vit.pth").as_uri()  # a URL: exercises the download path
    real.llm.name_or_path = str(tmp_path / "flan-t5")
    real.llm.dtype = "fp32"
    real.tokenizer = str(tokenizer_dir)
    real.pretrained = str(tmp_path / "blip2.pth")
    model = SeViLA.from_config(real)  # allow_random_init is false: every group needs a source

    assert torch.equal(model.visual_encoder.blocks[0].attn.qkv.weight, vit_state["blocks.0.attn.qkv.weight"])
    assert torch.equal(model.t5_model.lm_head.weight, donor.t5_model.lm_head.weight)
    assert torch.equal(model.roles["localizer"].qformer.bert.encoder.layer[0].crossattention.self.query.weight,
                       donor.roles["answerer"].qformer.bert.encoder.layer[0].crossattention.self.query.weight)
    assert model.t5_model.config.dense_act_fn == "gelu"
    assert set(model.weight_sources) == {k.split(".")[0] for k in file_state(model)}


def test_resolve_file_downloads_urls_once_and_checks_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_SEVILA_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "w.pth"
    torch.save({"x": torch.ones(1)}, src)
    first = resolve_file(src.as_uri())
    src.unlink()
    assert resolve_file(src.as_uri()) == first and first.exists()  # served from the cache
    with pytest.raises(FileNotFoundError):
        resolve_file(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match="could not download"):
        resolve_file((tmp_path / "gone.pth").as_uri())


def test_load_model_and_preprocess_builds_the_tiny_model():
    from lavis.models import load_model_and_preprocess

    model, vis, _ = load_model_and_preprocess("sevila", "tiny", is_eval=True)
    assert isinstance(model, SeViLA) and not model.training
    frames = vis["eval"](torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    assert frames.shape == (4, 3, 32, 32) and frames.dtype == torch.float32


def test_registration_is_safe_to_import_twice():
    code = (
        "import importlib, lavis_sevila, lavis_sevila.models.sevila\n"
        "import lavis_sevila\n"
        "from lavis.common.registry import registry\n"
        "assert registry.get_model_class('sevila') is lavis_sevila.models.sevila.SeViLA\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert registry.get_model_class("sevila") is SeViLA


def test_unknown_config_keys_and_model_types_fail():
    with pytest.raises(ValueError, match="model.vision.dept"):
        build_tiny(**{"vision.dept": 3})
    with pytest.raises(ValueError, match="unknown SeViLA model_type"):
        SeViLA.default_config_path("flant5xxl")
    with pytest.raises(ValueError, match="unknown stage"):
        build_tiny(stage="train_loc_freeze_qa")


def test_every_size_comes_from_the_yaml():
    model = build_tiny(**{
        "vision.depth": 1, "vision.embed_dim": 24, "vision.num_heads": 2, "qformer.num_query_token": 3,
        "qformer.num_hidden_layers": 1, "llm.config.d_model": 16, "llm.config.num_layers": 1,
    })
    answerer = model.roles["answerer"]
    assert len(model.visual_encoder.blocks) == 1 and answerer.ln.normalized_shape == (24,)
    assert answerer.query_tokens.shape == (1, 3, 48) and len(answerer.qformer.bert.encoder.layer) == 1
    assert answerer.proj.out_features == 16 and len(model.t5_model.encoder.block) == 1
    assert model.visual_encoder.blocks[0].attn.qkv.weight.dtype == torch.float32
