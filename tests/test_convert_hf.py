"""Hugging Face BLIP-2 <-> our layout (models/convert_hf.py), with tiny random HF models.

The HF side is transformers' own ``Blip2ForConditionalGeneration`` built from a config whose
shapes match the tiny SeViLA (``blip2_config_for``); the numerical checks run both models
on the same input, which is what proves the q/v bias packing and the LayerNorm mapping.
"""
from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tiny

from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.models import convert_hf as C
from lavis_sevila.models.qformer import query_features

BLIP2_GROUPS = ("visual_encoder", "ln_vision", "Qformer", "query_tokens", "t5_proj", "t5_model")


def _randomise(module: torch.nn.Module, seed: int, std: float = 0.1) -> None:
    """Every parameter random (HF inits biases and LayerNorms to constants; a mapping bug could hide)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            centre = 1.0 if param.ndim == 1 and name.endswith("weight") else 0.0  # LayerNorm scales near 1
            param.copy_(torch.randn(param.shape, generator=generator) * std + centre)


def _random_hf(config, seed: int = 1):
    from transformers import Blip2ForConditionalGeneration

    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    _randomise(model, seed)
    with torch.no_grad():
        for layer in model.vision_model.encoder.layers:  # EVA has no key bias
            d = layer.self_attn.embed_dim
            layer.self_attn.qkv.bias[d : 2 * d].zero_()
    return model


def _blip2_state(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt.file_state(model).items() if ckpt.group_of(k) in BLIP2_GROUPS}


@pytest.fixture(scope="module")
def tiny_model():
    model = build_tiny()
    _randomise(model, 7)
    return model


@pytest.fixture(scope="module")
def hf_config(tiny_model):
    return C.blip2_config_for(tiny_model)


@pytest.fixture(scope="module")
def hf_model(hf_config):
    return _random_hf(hf_config)


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "blip2-tiny-t5"
    hf_model.save_pretrained(path)
    return path


def _opt_config(hf_config):
    from transformers import Blip2Config, OPTConfig

    text = OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=120,
                     max_position_embeddings=64, word_embed_proj_dim=32)
    return Blip2Config(vision_config=hf_config.vision_config.to_dict(), qformer_config=hf_config.qformer_config.to_dict(),
                       text_config=text.to_dict(), num_query_tokens=hf_config.num_query_tokens)


# -- round trips ---------------------------------------------------------------------------------
def test_hf_to_ours_to_hf_is_exact(hf_model, hf_config):
    hf_state = hf_model.state_dict()
    ours, report = C.from_hf(hf_state, hf_config)
    assert set(report.converted) == set(BLIP2_GROUPS)
    back, _ = C.to_hf(ours, hf_config)
    assert set(back) == set(hf_state)
    assert all(torch.equal(back[k], hf_state[k]) for k in hf_state)


def test_ours_to_hf_to_ours_is_exact(tiny_model, hf_config):
    ours = _blip2_state(tiny_model)
    hf_state, _ = C.to_hf(ours, hf_config)
    again, _ = C.from_hf(hf_state, hf_config)
    assert set(again) == set(ours)
    assert all(torch.equal(again[k], ours[k]) for k in ours)


def test_localizer_role_becomes_the_blip2_qformer(tiny_model, hf_config):
    state = ckpt.file_state(tiny_model)  # both roles
    with pytest.raises(C.ConversionError, match="both roles"):
        C.to_hf(state, hf_config)
    hf_state, report = C.to_hf(state, hf_config, role="localizer")
    assert report.dropped and all(ckpt.group_of(k) in ("Qformer", "ln_vision", "query_tokens", "t5_proj") for k in report.dropped)
    assert torch.equal(hf_state["query_tokens"], state["query_tokens_loc"])
    key = "qformer.encoder.layer.0.crossattention.attention.key.weight"
    assert torch.equal(hf_state[key], state["Qformer_loc.bert.encoder.layer.0.crossattention.self.key.weight"])
    assert not torch.equal(state["query_tokens_loc"], state["query_tokens"])  # the test can tell the roles apart


# -- numerical parity with transformers' BLIP-2 ------------------------------------------------------
@torch.no_grad()
def _parity(model, hf_model) -> dict[str, float]:
    """Max-abs differences between our converted model and the HF model on one input."""
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, hf_model.config.vision_config.image_size, hf_model.config.vision_config.image_size)
    hf_vision = hf_model.vision_model(pixel_values=pixels, output_hidden_states=True)
    ours_pre = model.visual_encoder(pixels)
    mask = torch.ones(hf_vision.last_hidden_state.shape[:2], dtype=torch.long)
    hf_q = hf_model.qformer(query_embeds=hf_model.query_tokens.expand(2, -1, -1),
                            encoder_hidden_states=hf_vision.last_hidden_state, encoder_attention_mask=mask).last_hidden_state
    ids = torch.randint(5, 300, (2, 7))
    decoder_ids = torch.randint(5, 300, (2, 3))
    hf_logits = hf_model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids),
                         decoder_input_ids=decoder_ids).logits
    out = {"vit_before_ln": (hf_vision.hidden_states[-1] - ours_pre).abs().max().item()}
    for role in ("answerer", "localizer"):
        ln = model.roles[role].ln
        features = ln(ours_pre)
        out[f"{role}_ln_vision"] = (hf_vision.last_hidden_state - features).abs().max().item()
        same_eps = torch.nn.functional.layer_norm(ours_pre, ln.normalized_shape, ln.weight, ln.bias,
                                                  eps=hf_model.config.vision_config.layer_norm_eps)
        out[f"{role}_ln_vision_hf_eps"] = (hf_vision.last_hidden_state - same_eps).abs().max().item()
        q = query_features(model.roles[role].qformer, model.roles[role].query_tokens, features)
        out[f"{role}_qformer"] = (hf_q - q).abs().max().item()
        visual = model.role_tokens(role, ours_pre)
        embeds = torch.cat([visual, model.llm.embed(ids)], dim=1)
        attn = torch.ones(embeds.shape[:2], dtype=torch.long)
        logits = model.llm.module(inputs_embeds=embeds, attention_mask=attn, decoder_input_ids=decoder_ids).logits
        out[f"{role}_t5_logits"] = (hf_logits - logits).abs().max().item()
    out["scale_logits"] = hf_logits.abs().max().item()
    out["scale_vit"] = hf_vision.hidden_states[-1].abs().max().item()
    return out


@pytest.fixture(scope="module")
def loaded_from_hf_dir(hf_dir):
    """A tiny SeViLA whose model.pretrained is the HF directory (normal loading path, both roles)."""
    return build_tiny(pretrained=f"hf:{hf_dir}", seed=11)


def test_converted_model_matches_hf_numerically(loaded_from_hf_dir, hf_model, capsys):
    diffs = _parity(loaded_from_hf_dir, hf_model)
    with capsys.disabled():
        print("\nHF parity max-abs:", json.dumps({k: float(f"{v:.3g}") for k, v in diffs.items()}))
    assert diffs["vit_before_ln"] < 1e-5 * max(1.0, diffs["scale_vit"])
    for role in ("answerer", "localizer"):
        # the mapping is exact at HF's eps; LAVIS's ln_vision eps (1e-5 vs HF's 1e-6) adds the rest
        assert diffs[f"{role}_ln_vision_hf_eps"] < 1e-5
        assert diffs[f"{role}_ln_vision"] < 1e-3
        assert diffs[f"{role}_qformer"] < 1e-4
        assert diffs[f"{role}_t5_logits"] < 1e-4 * max(1.0, diffs["scale_logits"])


def test_parity_check_detects_swapped_qv_biases(loaded_from_hf_dir, hf_model):
    """The numerical check is sharp: q and v biases exchanged in block 0 break it."""
    model = build_tiny(seed=11)
    state = dict(loaded_from_hf_dir.state_dict())
    q, v = "visual_encoder.blocks.0.attn.q_bias", "visual_encoder.blocks.0.attn.v_bias"
    state[q], state[v] = state[v], state[q]
    model.load_state_dict(state)
    assert _parity(model, hf_model)["vit_before_ln"] > 1e-3


def test_hf_directory_loads_into_both_roles(loaded_from_hf_dir, hf_model, hf_config):
    model = loaded_from_hf_dir
    expected, _ = C.from_hf(hf_model.state_dict(), hf_config)
    own = ckpt.file_state(model)
    for key, value in expected.items():
        assert torch.equal(own[key], value), key
        group, dot, rest = key.partition(".")
        if group in ("ln_vision", "Qformer", "query_tokens", "t5_proj"):
            assert torch.equal(own[f"{group}_loc{dot}{rest}"], value), key
    assert model.weight_sources["Qformer"].startswith("hf:")
    assert model.weight_sources["Qformer_loc"] == "copy of Qformer"
    assert model.weight_sources["t5_model"].startswith("hf:")


# -- strict reporting -----------------------------------------------------------------------------
def test_nonzero_key_bias_is_refused(hf_model, hf_config):
    state = dict(hf_model.state_dict())
    key = "vision_model.encoder.layers.0.self_attn.qkv.bias"
    bias = state[key].clone()
    bias[len(bias) // 2] = 0.5
    state[key] = bias
    with pytest.raises(C.ConversionError, match="non-zero key bias"):
        C.from_hf(state, hf_config)


def test_unmapped_missing_shape_and_dtype_errors_name_the_keys(hf_model, hf_config):
    good = hf_model.state_dict()
    extra = dict(good, **{"qformer.encoder.layer.0.intermediate.dense.weight": torch.zeros(96, 48)})
    with pytest.raises(C.ConversionError, match=r"no counterpart.*qformer.*intermediate\.dense"):
        C.from_hf(extra, hf_config)
    missing = {k: v for k, v in good.items() if k != "qformer.layernorm.bias"}
    with pytest.raises(C.ConversionError, match=r"missing.*qformer\.layernorm\.bias"):
        C.from_hf(missing, hf_config)
    reshaped = dict(good, query_tokens=torch.zeros(1, 5, 48))
    with pytest.raises(C.ConversionError, match=r"query_tokens: \(1, 5, 48\) != \(1, 4, 48\)"):
        C.from_hf(reshaped, hf_config)
    ints = dict(good, **{"language_projection.bias": torch.zeros(48, dtype=torch.long)})
    with pytest.raises(C.ConversionError, match="floating point"):
        C.from_hf(ints, hf_config)
    dropped, report = C.from_hf(extra, hf_config, drop=["qformer.encoder.layer.*.intermediate.*"])
    assert report.dropped == ["qformer.encoder.layer.0.intermediate.dense.weight"]


def test_ours_side_errors(tiny_model, hf_config):
    ours = _blip2_state(tiny_model)
    with pytest.raises(C.ConversionError, match=r"no counterpart.*Qformer\.cls"):
        C.to_hf(dict(ours, **{"Qformer.cls.bias": torch.zeros(3)}), hf_config)
    with pytest.raises(C.ConversionError, match=r"missing.*vision_model\.embeddings\.class_embedding"):
        C.to_hf({k: v for k, v in ours.items() if k != "visual_encoder.cls_token"}, hf_config)
    shifted = dict(ours, **{"Qformer.bert.embeddings.position_ids": torch.arange(1, 65)[None]})
    with pytest.raises(C.ConversionError, match="position_ids"):
        C.to_hf(shifted, hf_config)
    untied = dict(ours, **{"t5_model.encoder.embed_tokens.weight": ours["t5_model.shared.weight"] + 1})
    with pytest.raises(C.ConversionError, match="tied"):
        C.to_hf(untied, hf_config)


# -- files, commands, sources --------------------------------------------------------------------------
def test_written_hf_directory_loads_in_transformers(tiny_model, hf_config, tmp_path):
    from safetensors import safe_open
    from transformers import Blip2ForConditionalGeneration

    hf_state, _ = C.to_hf(_blip2_state(tiny_model), hf_config)
    out = C.write_hf(hf_state, hf_config, tmp_path / "out")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert "language_model.shared.weight" in stored and "language_model.encoder.embed_tokens.weight" not in stored
    loaded, info = Blip2ForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert all(torch.equal(v, hf_state[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(FileExistsError):
        C.write_hf(hf_state, hf_config, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial directory left


def test_commands_both_ways(hf_dir, hf_model, tmp_path, capsys):
    pth = tmp_path / "blip2.pth"
    assert C.main(["from-hf", "--input", str(hf_dir), "--output", str(pth)]) == 0
    payload = ckpt.read_checkpoint(pth)  # manifest checked against the tensors
    assert payload["manifest"]["converted_from"] == str(hf_dir)
    out = tmp_path / "hf-again"
    assert C.main(["to-hf", "--input", str(pth), "--output", str(out), "--config", str(hf_dir)]) == 0
    config, state = C.read_hf(out)
    original = hf_model.state_dict()
    full, _ = C.from_hf(state, config)  # fills the tied names HF stored once
    back, _ = C.to_hf(full, config)
    assert set(back) == set(original) and all(torch.equal(back[k], original[k]) for k in original)
    assert C.main(["to-hf", "--input", str(pth), "--output", str(out), "--config", str(hf_dir)]) == 2
    assert "exists" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.part"))


def test_to_hf_with_base_fills_what_a_training_checkpoint_lacks(tiny_model, hf_dir, hf_model, tmp_path):
    role_only = {k: v for k, v in ckpt.file_state(tiny_model).items() if ckpt.group_of(k).endswith("_loc")}
    config, base = C.read_hf(hf_dir)
    with pytest.raises(C.ConversionError, match="missing.*vision_model"):
        C.to_hf(role_only, config)
    hf_state, report = C.to_hf(role_only, config, base=base)
    assert {ckpt.group_of(k) for k in report.filled} == {"vision_model", "language_model"}
    assert torch.equal(hf_state["query_tokens"], role_only["query_tokens_loc"])
    key = "vision_model.encoder.layers.0.mlp.fc1.weight"
    assert torch.equal(hf_state[key], hf_model.state_dict()[key])


def test_opt_blip2_loads_into_an_opt_model_and_only_its_shared_parts_into_t5(tmp_path):
    from lavis_sevila.models import SeViLA

    torch.manual_seed(0)
    opt = SeViLA.from_model_type("tiny_opt").eval()
    config = C.blip2_config_for(opt)
    hf = _random_hf(config, seed=5)
    ours, report = C.from_hf(hf.state_dict(), config)
    assert set(report.converted) == {"visual_encoder", "ln_vision", "Qformer", "query_tokens", "opt_proj", "opt_model"}
    back, _ = C.to_hf(ours, config)
    assert all(torch.equal(back[k], v) for k, v in hf.state_dict().items())
    directory = tmp_path / "blip2-tiny-opt"
    hf.save_pretrained(directory)
    torch.manual_seed(1)
    loaded = SeViLA.from_model_type("tiny_opt", pretrained=f"hf:{directory}", allow_random_init=False).eval()
    for key, value in ours.items():
        assert torch.equal(ckpt.file_state(loaded)[key], value), key
    assert torch.equal(loaded.roles["localizer"].proj.weight, ours["opt_proj.weight"])  # localizer = copy of the answerer
    with pytest.raises(ckpt.CheckpointError, match="opt_"):  # an OPT's LLM cannot go into a T5 SeViLA
        build_tiny(pretrained=f"hf:{directory}")
    shared, report = C.from_hf(hf.state_dict(), config, parts="shared")
    assert set(report.converted) == {"visual_encoder", "ln_vision", "Qformer", "query_tokens"}
    assert {ckpt.group_of(k) for k in report.dropped} == {"language_model", "language_projection"}
    _, read = C.read_hf(directory, parts="shared")  # the LLM is not even read
    assert read and not any(k.startswith(("language_model.", "language_projection.")) for k in read)
    model = build_tiny(pretrained=f"hf-shared:{directory}")
    for key, value in shared.items():
        assert torch.equal(ckpt.file_state(model)[key], value), key
    assert torch.equal(model.roles["localizer"].qformer.bert.embeddings.LayerNorm.weight, shared["Qformer.bert.embeddings.LayerNorm.weight"])
    assert "t5_model" not in model.weight_sources and "t5_proj" not in model.weight_sources


def test_a_blip2_with_an_unknown_language_model_is_refused(hf_config):
    config = _opt_config(hf_config)
    config.text_config.model_type = "gpt9"
    with pytest.raises(C.ConversionError, match=r"'gpt9' language model.*hf-shared:"):
        C.from_hf({}, config)


def test_hub_name_failure_says_what_to_do(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match=r"huggingface-cli download Salesforce/blip2-flan-t5-xl --local-dir"):
        C.resolve_hf_dir("Salesforce/blip2-flan-t5-xl")
    with pytest.raises(FileNotFoundError, match="not a local directory nor a hub name"):
        C.resolve_hf_dir("no/such/dir")


def test_source_prefixes():
    from lavis_sevila.models.pretrained import resolve_file

    source = resolve_file("hf-shared:Salesforce/blip2-opt-2.7b")
    assert source == C.HFSource("Salesforce/blip2-opt-2.7b", "shared")
    assert str(source) == "hf-shared:Salesforce/blip2-opt-2.7b"
    assert resolve_file("hf:/x/y").parts == "all"


def test_real_blip2_flant5xl_layout_matches_ours_key_for_key():
    """At the real sizes (ViT-g 39 blocks, BERT-base Q-Former, Flan-T5-XL), on the meta device:
    every HF key maps to one of ours with the same shape, and nothing is left over."""
    from lavis.models.blip2_models.blip2 import LayerNorm
    from lavis.models.blip2_models.modeling_t5 import T5ForConditionalGeneration
    from transformers import Blip2Config, T5Config

    from lavis_sevila.models.config import QFormerConfig, VisionConfig
    from lavis_sevila.models.qformer import build_qformer
    from lavis_sevila.models.vision import build_vision_encoder

    # google/flan-t5-xl's sizes, as in its config.json
    t5 = T5Config(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_heads=32,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    config = Blip2Config(text_config=t5.to_dict())  # HF's defaults are BLIP-2's ViT-g and Q-Former
    expect = C.hf_expectation(config)
    table = C.key_table(config)
    init_empty_weights = pytest.importorskip("accelerate").init_empty_weights  # LAVIS's init needs CPU scalars

    with init_empty_weights():
        vit = build_vision_encoder(VisionConfig(weights=None, precision="fp32"))
        qformer, query_tokens = build_qformer(QFormerConfig(), vit.num_features)
        parts = {"visual_encoder": vit, "ln_vision": LayerNorm(vit.num_features), "Qformer": qformer,
                 "t5_proj": torch.nn.Linear(768, 2048), "t5_model": T5ForConditionalGeneration(t5)}
    ours = {f"{name}.{k}": tuple(v.shape) for name, m in parts.items() for k, v in m.state_dict().items()}
    ours["query_tokens"] = tuple(query_tokens.shape)
    mapped = {o: expect.shapes[h] for o, h in table.renames}
    for q, v, h in table.packed:
        assert expect.shapes[h] == (3 * 1408,)
        mapped[q] = mapped[v] = (1408,)
    mapped.update({f"t5_model.{k[len('language_model.'):]}": s for k, s in expect.shapes.items()
                   if k.startswith("language_model.")})
    mapped["Qformer.bert.embeddings.position_ids"] = (1, table.position_ids_len)
    assert sorted(set(ours) ^ set(mapped)) == []
    assert {k: s for k, s in ours.items() if mapped[k] != s} == {}
    assert len(table.packed) == 39 and vit.blocks[0].mlp.fc1.out_features == expect.shapes[
        "vision_model.encoder.layers.0.mlp.fc1.weight"][0] == 6144
