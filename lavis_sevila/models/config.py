"""Typed configuration of a SeViLA model: one small dataclass per tower.

The YAML files in ``lavis_sevila/configs/models/`` are the architectures; this module
turns their ``model:`` section (after LAVIS's ``--options`` overrides) into these
dataclasses and rejects unknown keys, so a typo in an override fails loudly instead of
being ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from lavis_sevila.models.stages import ROLES, Stage

EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"
BLIP2_FLANT5XL_URL = (
    "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/blip2_pretrained_flant5xl.pth"
)


@dataclass
class VisionConfig:
    """EVA ViT (LAVIS's ``VisionTransformer``); the defaults are BLIP-2's ViT-g/14."""

    img_size: int = 224
    patch_size: int = 14
    embed_dim: int = 1408
    depth: int = 39
    num_heads: int = 16
    mlp_ratio: float = 4.3637
    drop_path_rate: float = 0.0
    use_grad_checkpoint: bool = False
    precision: str = "fp16"  # fp16 | fp32 (weights of Linear/Conv layers, as LAVIS does)
    weights: str | None = EVA_VIT_G_URL  # URL or local file; None = random init


@dataclass
class QFormerConfig:
    """BLIP-2 Q-Former (BERT layout with cross-attention); defaults are BERT-base's."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_freq: int = 2
    num_query_token: int = 32
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    vocab_size: int = 30522
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02


@dataclass
class LLMConfig:
    """The frozen language model that scores candidate next tokens."""

    family: str = "t5"  # t5 | opt | llama (models/llm/base.py FAMILIES)
    # hub name or local directory; None builds a randomly initialised model from `config`
    name_or_path: str | None = "google/flan-t5-xl"
    # transformers config fields: overrides on top of name_or_path's config, or the whole
    # config when name_or_path is None (vocab_size defaults to the tokenizer's size)
    config: dict[str, Any] = field(default_factory=dict)
    dtype: str = "bf16"  # bf16 (paper) | fp16 | fp32 (CPU tests)
    # torch.compile the LLM's encoder (T5 only; opt-in: a one-time compile of about half a
    # minute per process, then ~1.3x on the encoder on a CPU; numbers in docs/speed.md)
    compile: bool = False
    # family-specific settings (T5's dense_act_fn, ...) belong in `config`; the family's
    # module (models/llm/<family>.py) owns their defaults


@dataclass
class LoRAConfig:
    """``model.lora``: rank, scale (alpha), dropout, the roles that get an adapter, and the
    LLM's target modules (default: the family's ``lora_targets``, e.g. T5 q,v)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    roles: list[str] = field(default_factory=list)
    target_modules: list[str] | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise ValueError(f"model.lora.roles: unknown role(s) {unknown}; known: {list(ROLES)}")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"model.lora.roles lists a role twice: {self.roles}")
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.lora needs r >= 1, alpha > 0, 0 <= dropout < 1; got {self.r}, {self.alpha}, {self.dropout}")


@dataclass
class SeViLAConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    # hub name, local directory, or "builtin:tiny" (an offline word-level T5 tokenizer)
    tokenizer: str = "google/flan-t5-xl"
    max_txt_len: int = 77
    answer_num: int = 5  # option letters scored (VLEP 2, STAR/How2QA 4)
    num_keyframes: int = 4  # k: frames the localizer hands to the answerer
    # how k keyframes are picked from the scores (models/keyframes.py): topk_in_time_order
    # (paper) | topk_min_gap (args: min_gap) | score_sampling (args: temperature, seed)
    keyframe_selection: str = "topk_in_time_order"
    keyframe_selection_args: dict[str, Any] = field(default_factory=dict)
    stage: Stage = Stage.INFER
    freeze_vit: bool = True
    freeze_llm: bool = True
    # orig runs the frozen role of a training stage with dropout on; we default to eval mode
    frozen_role_train_mode: bool = False
    # stage 0 (pretrain_backbone) only: 0 = the image layout alone (as BLIP-2); k > 0 adds the
    # same loss in the video layout with the frame repeated k times ("Frame 1: " .. "Frame k: "),
    # so a tiny LLM trained from scratch has seen the answerer's video prompt (docs/backbones.md)
    pretrain_video_frames: int = 0
    # (frame, question) rows per LLM call when scoring frames (a memory bound); None = auto:
    # all rows at once on a GPU, on a CPU as many as keep one call's activations about
    # 3 MiB wide (cache-sized: 32 rows for the medium benchmark shape; docs/speed.md)
    localizer_chunk_size: int | None = None
    # ViT features kept per clip (models/feature_cache.py): an in-memory LRU of this many MiB
    # (0 = off), and optionally a folder of safetensors files (e.g. beside the shards)
    feature_cache_mb: float = 1024
    feature_cache_dir: str | None = None
    # stage 3 with fixed frames: keep the frozen answerer's pseudo-labels per (clip, question)
    # and compute them once per run instead of every epoch (feature_cache.PseudoLabelCache)
    pseudo_label_cache: bool = False
    # BLIP-2 checkpoint(s) filling the answerer (URL or file; {"model": state_dict}), in
    # order, before the localizer copy: one file, or a list (MiniGPT-4: BLIP-2's ViT and
    # Q-Former, then pretrained_minigpt4.pth's llama_proj)
    pretrained: list[str] = field(default_factory=list)
    # where the localizer starts: "answerer" copies the answerer's Q-Former, query tokens,
    # projection and LayerNorm after `pretrained` is loaded (paper); "random" keeps the init
    localizer_init: str = "answerer"
    # SeViLA checkpoints applied in order after that (authors' sevila_pretrained.pth, or ours)
    finetuned: list[str] = field(default_factory=list)
    # "localizer" copies the localizer into the answerer after all checkpoints are loaded:
    # for a backbone without BLIP-2 weights (the tiny demo), the pre-trained localizer is
    # the one pre-trained Q-Former both roles start from; "none" leaves the answerer alone
    answerer_init: str = "none"
    # state-dict key patterns a checkpoint may carry that we drop on purpose (fnmatch)
    allow_unexpected: list[str] = field(default_factory=list)
    # groups nobody loaded are an error unless random init is allowed (tiny models)
    allow_random_init: bool = False
    # LoRA adapters on the LLM, one per listed role (models/lora.py); None: no adapters
    lora: LoRAConfig | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SeViLAConfig":
        unset = _unset_keys(raw, "model")
        if unset:
            raise ValueError(
                f"{', '.join(unset)} must be set (the model config leaves it '???' because it has no public "
                "source); give it with --options, e.g. model.llm.name_or_path=/path/to/vicuna-7b"
            )
        raw = dict(raw)
        for ignored in ("arch", "model_type", "load_finetuned", "load_pretrained"):
            raw.pop(ignored, None)
        towers = {"vision": VisionConfig, "qformer": QFormerConfig, "llm": LLMConfig, "lora": LoRAConfig}
        kwargs: dict[str, Any] = {}
        for name, sub in towers.items():
            if name in raw:
                section = raw.pop(name)
                if name == "lora" and not section:
                    continue  # lora: null / {} = no adapters
                kwargs[name] = _build(sub, section or {}, prefix=f"model.{name}")
        for key in ("pretrained", "finetuned"):  # one source or a list
            sources = raw.pop(key, None)
            if sources:
                kwargs[key] = [sources] if isinstance(sources, str) else list(sources)
        if "stage" in raw:
            kwargs["stage"] = Stage.parse(raw.pop("stage"))
        kwargs.update(_build_kwargs(cls, raw, prefix="model", skip=set(towers) | {"pretrained", "finetuned", "stage"}))
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        if not 1 <= self.answer_num <= 5:
            raise ValueError(f"model.answer_num must be 1..5, got {self.answer_num}")
        if self.num_keyframes < 1:
            raise ValueError("model.num_keyframes must be >= 1")
        if self.localizer_init not in ("answerer", "random"):
            raise ValueError(f"model.localizer_init must be 'answerer' or 'random', got {self.localizer_init!r}")
        if self.answerer_init not in ("none", "localizer"):
            raise ValueError(f"model.answerer_init must be 'none' or 'localizer', got {self.answerer_init!r}")
        from lavis_sevila.models.keyframes import build_selector

        build_selector(self.keyframe_selection, self.keyframe_selection_args)  # names and args checked
        if self.feature_cache_mb < 0:
            raise ValueError(f"model.feature_cache_mb must be >= 0 (0 = off), got {self.feature_cache_mb}")
        if self.pretrain_video_frames < 0:
            raise ValueError(f"model.pretrain_video_frames must be >= 0 (0 = image layout only), got {self.pretrain_video_frames}")
        if self.localizer_chunk_size is not None and self.localizer_chunk_size < 1:
            raise ValueError(f"model.localizer_chunk_size must be >= 1 or null, got {self.localizer_chunk_size}")
        if self.llm.dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"model.llm.dtype must be bf16, fp16 or fp32, got {self.llm.dtype!r}")
        if self.lora is not None:
            self.lora.validate()
            if self.lora.roles and not self.freeze_llm:
                raise ValueError("model.lora trains adapters on a frozen base LLM; set model.freeze_llm: true "
                                 "(or drop model.lora to train the whole LLM)")
        if self.vision.precision not in ("fp16", "fp32"):
            raise ValueError(f"model.vision.precision must be fp16 or fp32, got {self.vision.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stage"] = self.stage.value
        return out


def _unset_keys(value: Any, prefix: str) -> list[str]:
    """Dotted keys whose value is OmegaConf's mandatory-missing marker '???'."""
    if isinstance(value, str):
        return [prefix] if value == "???" else []
    if isinstance(value, Mapping):
        return [k for key, item in value.items() for k in _unset_keys(item, f"{prefix}.{key}")]
    if isinstance(value, (list, tuple)):
        return [k for i, item in enumerate(value) for k in _unset_keys(item, f"{prefix}[{i}]")]
    return []


def _build_kwargs(cls: type, raw: Mapping[str, Any], prefix: str, skip: set[str] = frozenset()) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)} - set(skip)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(prefix + '.' + k for k in unknown)}; known: {sorted(known)}")
    return dict(raw)


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    return cls(**_build_kwargs(cls, raw, prefix))
