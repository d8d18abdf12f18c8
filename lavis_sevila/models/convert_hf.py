"""Hugging Face BLIP-2 (``Blip2ForConditionalGeneration``) <-> the authors'/LAVIS flat layout.

Our checkpoints use LAVIS's names (``visual_encoder``, ``ln_vision``, ``Qformer.bert``,
``query_tokens``, ``t5_proj``, ``t5_model``); most users hold BLIP-2 in Hugging Face's
layout (``vision_model``, ``qformer``, ``query_tokens``, ``language_projection``,
``language_model``).  This module is the one place that translates between them, key by
key, at the load/save boundary.  What differs besides names:

* EVA's attention keeps ``q_bias`` and ``v_bias`` and has no key bias; HF packs one
  ``qkv.bias`` = [q | 0 | v].  A non-zero key bias cannot be represented in EVA: refused.
* HF's ``vision_model.post_layernorm`` is LAVIS's ``ln_vision`` (EVA's tower ends without a
  norm; BLIP-2 normalises outside it).  Its eps is HF's vision ``layer_norm_eps`` (1e-6);
  LAVIS's ``ln_vision`` uses 1e-5 (see docs/backbones.md).
* The Q-Former's ``attention.self`` is HF's ``attention.attention``; its embedding
  LayerNorm is HF's ``qformer.layernorm``; LAVIS keeps a ``position_ids`` buffer that HF
  does not store (we write ``arange`` and check it on the way back).
* Tied LLM weights (T5's ``shared``/``embed_tokens``) are stored once by HF; we fill and
  check the aliases from the model class built on the meta device.

Every key on either side is accounted for: a key nobody maps, a missing key, a shape
that differs from the config's, or a non-float tensor is an error that lists them.

Sources for ``model.pretrained``: ``hf:<hub name or local dir>`` (everything, into the
answerer; ``localizer_init: answerer`` copies it into the localizer) and
``hf-shared:<...>`` (ViT, ``ln_vision``, Q-Former and query tokens only: the parts that
do not depend on the LLM, e.g. from a BLIP-2 OPT into our T5 model).

Command: ``python -m lavis_sevila.models.convert_hf from-hf|to-hf --input ... --output ...``.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from lavis_sevila.models.checkpoint import CheckpointError, atomic_save, group_of, load_state_file, manifest_for
from lavis_sevila.models.stages import ANSWERER, LOCALIZER, ROLES

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
HF_SHARED_PREFIX = "hf-shared:"
PARTS = ("all", "shared")
_QFORMER_POSITION_IDS = "Qformer.bert.embeddings.position_ids"
_LLM_PREFIXES = ("language_model.", "language_projection.")  # HF keys outside the "shared" parts


class ConversionError(CheckpointError):
    pass


# -- the key table -----------------------------------------------------------------------
def llm_names(family: str) -> tuple[str, str]:
    """(LLM group, projection group) in LAVIS's layout for an HF text model_type (t5 -> t5_model, t5_proj)."""
    from lavis_sevila.models.llm.base import FAMILIES, family_class

    if family in FAMILIES:
        cls = family_class(family)
        return cls.state_key, cls.proj_key
    return f"{family}_model", f"{family}_proj"


def _wb(ours: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{ours}.weight", f"{hf}.weight"), (f"{ours}.bias", f"{hf}.bias")]


@dataclass
class KeyTable:
    """Every correspondence for one BLIP-2 config: renames, packed biases, the LLM prefix."""

    renames: list[tuple[str, str]]  # (ours, hf), one tensor each
    packed: list[tuple[str, str, str]]  # (ours q_bias, ours v_bias, hf qkv.bias)
    llm_ours: str  # "t5_model"
    position_ids_len: int  # LAVIS's Q-Former buffer, written as arange
    family: str  # HF text model_type

    @property
    def proj_ours(self) -> str:
        return llm_names(self.family)[1]


def key_table(config) -> KeyTable:
    """The table for a ``Blip2Config`` (layer counts and the LLM family come from it)."""
    vision, qformer = config.vision_config, config.qformer_config
    family = config.text_config.model_type
    llm_ours, proj_ours = llm_names(family)
    renames = [
        ("visual_encoder.cls_token", "vision_model.embeddings.class_embedding"),
        ("visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"),
        *_wb("visual_encoder.patch_embed.proj", "vision_model.embeddings.patch_embedding"),
        *_wb("ln_vision", "vision_model.post_layernorm"),
    ]
    packed = []
    for i in range(vision.num_hidden_layers):
        ours, hf = f"visual_encoder.blocks.{i}.", f"vision_model.encoder.layers.{i}."
        renames += _wb(ours + "norm1", hf + "layer_norm1") + _wb(ours + "norm2", hf + "layer_norm2")
        renames.append((ours + "attn.qkv.weight", hf + "self_attn.qkv.weight"))
        renames += _wb(ours + "attn.proj", hf + "self_attn.projection")
        renames += _wb(ours + "mlp.fc1", hf + "mlp.fc1") + _wb(ours + "mlp.fc2", hf + "mlp.fc2")
        packed.append((ours + "attn.q_bias", ours + "attn.v_bias", hf + "self_attn.qkv.bias"))
    renames += _wb("Qformer.bert.embeddings.LayerNorm", "qformer.layernorm")
    for i in range(qformer.num_hidden_layers):
        ours, hf = f"Qformer.bert.encoder.layer.{i}.", f"qformer.encoder.layer.{i}."
        kinds = ["attention"] + (["crossattention"] if i % qformer.cross_attention_frequency == 0 else [])
        for kind in kinds:
            for part in ("query", "key", "value"):
                renames += _wb(f"{ours}{kind}.self.{part}", f"{hf}{kind}.attention.{part}")
            renames += _wb(f"{ours}{kind}.output.dense", f"{hf}{kind}.output.dense")
            renames += _wb(f"{ours}{kind}.output.LayerNorm", f"{hf}{kind}.output.LayerNorm")
        renames += _wb(ours + "intermediate_query.dense", hf + "intermediate_query.dense")
        renames += _wb(ours + "output_query.dense", hf + "output_query.dense")
        renames += _wb(ours + "output_query.LayerNorm", hf + "output_query.LayerNorm")
    renames.append(("query_tokens", "query_tokens"))
    renames += _wb(proj_ours, "language_projection")
    return KeyTable(renames, packed, llm_ours, qformer.max_position_embeddings, family)


# -- what the HF class expects ---------------------------------------------------------------
@dataclass
class HFExpectation:
    shapes: dict[str, tuple[int, ...]]  # every state-dict key of Blip2ForConditionalGeneration
    aliases: list[list[str]]  # tied parameters: one tensor under several names (first = stored)


def hf_expectation(config) -> HFExpectation:
    """Keys, shapes and tied names of ``Blip2ForConditionalGeneration(config)``, built on meta."""
    from transformers import Blip2ForConditionalGeneration

    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    by_tensor: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(name)
    return HFExpectation(shapes, [names for names in by_tensor.values() if len(names) > 1])


# -- reports ------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    source: str
    converted: dict[str, int] = field(default_factory=dict)  # output group -> tensors
    dropped: list[str] = field(default_factory=list)  # input keys left out on request
    filled: list[str] = field(default_factory=list)  # tied aliases / base parts filled in
    note: str = ""

    def summary(self) -> str:
        parts = [f"converted {self.source}: " + ", ".join(f"{g} ({n})" for g, n in sorted(self.converted.items()))]
        if self.dropped:
            parts.append(f"left out on request: {_by_group(self.dropped)}")
        if self.filled:
            parts.append(f"filled: {_by_group(self.filled)}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


def _by_group(keys: Iterable[str]) -> str:
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        groups.setdefault(group_of(key), []).append(key)
    return ", ".join(f"{g} ({len(k)}, e.g. {k[:2]})" for g, k in groups.items())


def _raise_unmatched(source: str, unmapped: Sequence[str], missing: Sequence[str], side: str) -> None:
    if not unmapped and not missing:
        return
    lines = [f"{source}: the {side} state does not match the BLIP-2 layout"]
    if unmapped:
        lines.append(f"  {len(unmapped)} key(s) with no counterpart: {_by_group(unmapped)}")
    if missing:
        lines.append(f"  {len(missing)} key(s) missing: {_by_group(missing)}")
    lines.append("  (pass --drop PATTERN for keys you mean to leave out)")
    raise ConversionError("\n".join(lines))


def _check_float(source: str, state: Mapping[str, torch.Tensor], skip: Iterable[str] = ()) -> None:
    bad = [f"{k} ({v.dtype})" for k, v in state.items() if k not in set(skip) and not v.is_floating_point()]
    if bad:
        raise ConversionError(f"{source}: weights must be floating point: {bad[:5]}")


def _check_shapes(source: str, state: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]]) -> None:
    bad = [f"{k}: {tuple(v.shape)} != {shapes[k]}" for k, v in state.items() if k in shapes and tuple(v.shape) != shapes[k]]
    if bad:
        raise ConversionError(f"{source}: {len(bad)} shape(s) differ from the config: " + "; ".join(bad[:10]))


def _dropper(patterns: Sequence[str]):
    return lambda key: any(fnmatch.fnmatchcase(key, p) for p in patterns)


# -- HF -> ours ---------------------------------------------------------------------------
def from_hf(
    hf_state: Mapping[str, torch.Tensor],
    config,
    parts: str = "all",
    drop: Sequence[str] = (),
    source: str = "HF state",
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """An HF BLIP-2 state dict in LAVIS's BLIP-2 layout (answerer names), checked.

    ``parts="shared"`` keeps only the ViT, ``ln_vision``, Q-Former and query tokens;
    ``"all"`` also the projection and the LLM, and requires an LLM family lavis_sevila
    has (a BLIP-2 OPT's language model cannot load into a T5 SeViLA).
    """
    if parts not in PARTS:
        raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")
    table = key_table(config)
    expect = hf_expectation(config)
    report = ConversionReport(source)
    if parts == "all":
        from lavis_sevila.models.llm.base import FAMILIES

        if table.family not in FAMILIES:
            raise ConversionError(
                f"{source} is a BLIP-2 with a {table.family!r} language model; lavis_sevila has no "
                f"{table.family!r} LLM family (known: {sorted(FAMILIES)}), so its language model and "
                f"projection cannot load into a SeViLA model. To take only the ViT, ln_vision, Q-Former "
                f"and query tokens, use {HF_SHARED_PREFIX}<source> (or --parts shared)."
            )
    state = dict(hf_state)
    report.filled = _fill_aliases(state, expect.aliases, source)
    requested = _dropper(drop)

    def dropping(key: str) -> bool:
        return requested(key) or (parts == "shared" and key.startswith(_LLM_PREFIXES))

    report.dropped = sorted(k for k in state if dropping(k) and k not in report.filled)
    report.filled = [k for k in report.filled if not dropping(k)]
    report.note = "the language model and projection are left out (shared parts only)" if parts == "shared" else ""
    state = {k: v for k, v in state.items() if not dropping(k)}
    wanted = {k for k in expect.shapes if not dropping(k)}
    _check_table(table, expect)
    _raise_unmatched(source, sorted(set(state) - set(expect.shapes)), sorted(wanted - set(state)), "Hugging Face")
    _check_shapes(source, state, expect.shapes)
    _check_float(source, state)

    out: dict[str, torch.Tensor] = {}
    for ours, hf in table.renames:
        if hf in state:
            out[ours] = state[hf]
    for q_key, v_key, hf in table.packed:
        if hf not in state:
            continue
        q, k, v = state[hf].chunk(3)
        if k.count_nonzero():
            raise ConversionError(
                f"{source}: {hf} has a non-zero key bias; LAVIS's EVA ViT has none (q_bias, v_bias only)"
            )
        out[q_key], out[v_key] = q.clone(), v.clone()
    if any(k.startswith("qformer.") for k in state):
        out[_QFORMER_POSITION_IDS] = torch.arange(table.position_ids_len).unsqueeze(0)
    prefix = "language_model."
    for key, value in state.items():
        if key.startswith(prefix):
            out[f"{table.llm_ours}.{key[len(prefix):]}"] = value
    for key in out:
        report.converted[group_of(key)] = report.converted.get(group_of(key), 0) + 1
    logger.info(report.summary())
    return out, report


def _check_table(table: KeyTable, expect: HFExpectation) -> None:
    """Self-check: the table covers exactly the keys of the HF class (else this config needs a rule)."""
    hf_keys = {hf for _, hf in table.renames} | {hf for *_, hf in table.packed}
    llm = {k for k in expect.shapes if k.startswith("language_model.")}
    stray = sorted(set(expect.shapes) - hf_keys - llm)
    unknown = sorted(hf_keys - set(expect.shapes))
    if stray or unknown:
        raise ConversionError(
            f"this BLIP-2 config has keys with no conversion rule: {_by_group(stray) or '-'}; "
            f"rules for keys it lacks: {_by_group(unknown) or '-'}"
        )


def _fill_aliases(state: dict[str, torch.Tensor], aliases: list[list[str]], source: str) -> list[str]:
    """Give every name of a tied tensor its value (HF stores it once); differing copies are refused."""
    filled = []
    for names in aliases:
        present = [n for n in names if n in state]
        if not present:
            continue
        first = state[present[0]]
        for name in names:
            if name not in state:
                state[name] = first
                filled.append(name)
            elif not torch.equal(state[name], first):
                raise ConversionError(f"{source}: {present[0]} and {name} are one tied tensor in HF but differ")
    return filled


# -- ours -> HF ---------------------------------------------------------------------------
def select_role(state: Mapping[str, torch.Tensor], role: str | None, proj: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The BLIP-2 (answerer-named) view of one role of a SeViLA state, and the keys left out.

    An HF BLIP-2 holds one Q-Former; a state with both roles needs ``role`` chosen.
    """
    from lavis_sevila.models.convert import role_groups

    present = {name: any(group_of(k) in role_groups(name, proj) for k in state) for name in ROLES}
    if role is None:
        roles = [name for name in ROLES if present[name]]
        if len(roles) > 1:
            raise ConversionError("the input holds both roles; choose --role answerer or --role localizer")
        role = roles[0] if roles else ANSWERER
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
    if not present[role]:
        raise ConversionError(f"the input holds no {role} groups ({', '.join(role_groups(role, proj))})")
    other = ANSWERER if role == LOCALIZER else LOCALIZER
    mine = dict(zip(role_groups(role, proj), role_groups(ANSWERER, proj)))
    out, left = {}, []
    for key, value in state.items():
        group, dot, rest = key.partition(".")
        if group in mine:
            out[mine[group] + dot + rest] = value
        elif group in role_groups(other, proj):
            left.append(key)
        else:
            out[key] = value
    return out, left


def to_hf(
    state: Mapping[str, torch.Tensor],
    config,
    role: str | None = None,
    drop: Sequence[str] = (),
    base: Mapping[str, torch.Tensor] | None = None,
    source: str = "our state",
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Our state (LAVIS layout, one role) as an HF BLIP-2 state dict for ``config``, checked.

    ``base``: an HF state dict supplying every part the input lacks (a training
    checkpoint holds only its role's groups; the ViT and LLM come from the base).
    """
    table = key_table(config)
    expect = hf_expectation(config)
    report = ConversionReport(source)
    ours, left = select_role(state, role, table.proj_ours)
    dropping = _dropper(drop)
    report.dropped = sorted(left + [k for k in ours if dropping(k)])
    ours = {k: v for k, v in ours.items() if not dropping(k)}
    if _QFORMER_POSITION_IDS in ours:
        ids = ours.pop(_QFORMER_POSITION_IDS)
        if not torch.equal(ids.reshape(-1).long(), torch.arange(ids.numel())) or ids.numel() != table.position_ids_len:
            raise ConversionError(f"{source}: {_QFORMER_POSITION_IDS} is not arange({table.position_ids_len})")

    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key_ours, hf in table.renames:
        if key_ours in ours:
            out[hf] = ours[key_ours]
            used.add(key_ours)
    for q_key, v_key, hf in table.packed:
        if q_key in ours and v_key in ours:
            q, v = ours[q_key], ours[v_key]
            out[hf] = torch.cat([q, torch.zeros_like(q), v])
            used.update((q_key, v_key))
    prefix = table.llm_ours + "."
    for key, value in ours.items():
        if key.startswith(prefix):
            out["language_model." + key[len(prefix):]] = value
            used.add(key)
    _raise_unmatched(source, sorted(set(ours) - used), [], "lavis_sevila")

    _check_table(table, expect)
    _fill_aliases(out, expect.aliases, source)
    if base is not None:
        base = dict(base)
        _fill_aliases(base, expect.aliases, "base")
        for key in expect.shapes:
            if key not in out and key in base:
                out[key] = base[key]
                report.filled.append(key)
    missing = [k for k in expect.shapes if k not in out]
    _raise_unmatched(source, [], sorted(missing), "lavis_sevila (mapped to HF names)")
    _check_shapes(source, out, expect.shapes)
    _check_float(source, out)
    for key in out:
        report.converted[group_of(key)] = report.converted.get(group_of(key), 0) + 1
    logger.info(report.summary())
    return out, report


# -- files and directories ---------------------------------------------------------------------
def resolve_hf_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local directory for an HF model: the directory itself, or a hub snapshot."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(name_or_dir).count("/") != 1:
        raise FileNotFoundError(f"{name_or_dir}: not a local directory nor a hub name (owner/model)")
    from huggingface_hub import snapshot_download

    try:  # safetensors if the repository has them, else the weights-only-readable .bin files
        local = Path(snapshot_download(str(name_or_dir), allow_patterns=["*.json", "*.safetensors"]))
        if not any(local.glob("*.safetensors")):
            local = Path(snapshot_download(str(name_or_dir), allow_patterns=["*.json", "pytorch_model*.bin"]))
        return local
    except Exception as error:  # offline, unknown repo, ...: many exception types
        raise FileNotFoundError(
            f"{name_or_dir} is not a local directory, and fetching it from the Hugging Face hub failed "
            f"({type(error).__name__}: {error}). Download it elsewhere "
            f"(huggingface-cli download {name_or_dir} --local-dir DIR) and give hf:DIR."
        ) from error


def load_hf_config(name_or_dir: str | os.PathLike):
    """The ``Blip2Config`` of a directory, a config.json file or a hub name (refusing other models)."""
    from transformers import Blip2Config

    path = Path(name_or_dir).expanduser()
    config_file = path if path.is_file() else resolve_hf_dir(name_or_dir) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{name_or_dir}: no config.json")
    raw = json.loads(config_file.read_text())
    if raw.get("model_type") != "blip-2":
        raise ConversionError(f"{config_file}: model_type {raw.get('model_type')!r}, expected 'blip-2'")
    return Blip2Config.from_dict(raw)


def read_hf(name_or_dir: str | os.PathLike, parts: str = "all") -> tuple[Any, dict[str, torch.Tensor]]:
    """Config and tensors of an HF BLIP-2 directory/hub name (safetensors, or .bin read weights-only).

    ``parts="shared"`` does not read the LLM and projection tensors of safetensors files
    (a BLIP-2 OPT-2.7b's LLM is most of its bytes).
    """
    directory = resolve_hf_dir(name_or_dir)
    config = load_hf_config(directory)
    skip = _LLM_PREFIXES if parts == "shared" else ()
    state: dict[str, torch.Tensor] = {}
    for stem, reader in (("model.safetensors", _read_safetensors), ("pytorch_model.bin", _read_bin)):
        index = directory / f"{stem}.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (directory / stem).is_file():
            files = [stem]
        else:
            continue
        for name in files:
            part = reader(directory / name, skip)
            overlap = set(part) & set(state)
            if overlap:
                raise ConversionError(f"{directory}: {sorted(overlap)[:3]} appear in several shards")
            state.update(part)
        return config, state
    raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin (sharded or not)")


def _read_safetensors(path: Path, skip: tuple[str, ...]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys() if not k.startswith(skip)}


def _read_bin(path: Path, skip: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_state_file(path).items() if not k.startswith(skip)}


def write_hf(state: Mapping[str, torch.Tensor], config, output: str | os.PathLike, force: bool = False) -> Path:
    """An HF directory (config.json + safetensors, sharded at 5 GB) written atomically.

    Tied names are stored once, as ``save_pretrained`` does; ``from_pretrained`` re-ties them.
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    output = Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; remove it or pass --force")
    expect = hf_expectation(config)
    skip = {name for names in expect.aliases for name in names[1:]}
    stored = {k: v.contiguous() for k, v in state.items() if k not in skip}
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        split = split_torch_state_dict_into_shards(stored, filename_pattern="model{suffix}.safetensors", max_shard_size="5GB")
        for filename, keys in split.filename_to_tensors.items():
            save_file({k: stored[k] for k in keys}, str(partial / filename), metadata={"format": "pt"})
        if split.is_sharded:
            index = {"metadata": {}, "weight_map": split.tensor_to_filename}
            (partial / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config.architectures = ["Blip2ForConditionalGeneration"]
        config.save_pretrained(str(partial))
        if output.exists():
            old = output.with_name(output.name + ".old")
            os.replace(output, old)
            os.replace(partial, output)
            shutil.rmtree(old)
        else:
            os.replace(partial, output)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return output


def write_ours(state: Mapping[str, torch.Tensor], path: str | os.PathLike, **info: Any) -> Path:
    """A weights-only ``{"model": state_dict, "manifest": ...}`` file, written atomically."""
    state = {k: v.contiguous() for k, v in state.items()}
    return atomic_save({"model": state, "manifest": manifest_for(state, **info)}, path)


# -- model.pretrained sources -----------------------------------------------------------------
def is_hf_source(source: Any) -> bool:
    return isinstance(source, str) and source.startswith((HF_PREFIX, HF_SHARED_PREFIX))


@dataclass(frozen=True)
class HFSource:
    """``hf:<name or dir>`` / ``hf-shared:<name or dir>`` as given to ``model.pretrained``.

    ``pretrained.resolve_file`` returns it unchanged and ``checkpoint.load_state_file``
    calls :meth:`load`, so an HF BLIP-2 takes the normal, checked loading path.
    """

    name_or_dir: str
    parts: str

    @classmethod
    def parse(cls, source: str) -> "HFSource":
        if source.startswith(HF_SHARED_PREFIX):
            return cls(source[len(HF_SHARED_PREFIX):], "shared")
        if source.startswith(HF_PREFIX):
            return cls(source[len(HF_PREFIX):], "all")
        raise ValueError(f"{source!r} is not an hf: or hf-shared: source")

    def __str__(self) -> str:
        return (HF_SHARED_PREFIX if self.parts == "shared" else HF_PREFIX) + self.name_or_dir

    def load(self) -> dict[str, torch.Tensor]:
        config, state = read_hf(self.name_or_dir, self.parts)
        out, _ = from_hf(state, config, parts=self.parts, source=str(self))
        return out


# -- model side: an HF config for a SeViLA model -----------------------------------------------
def blip2_config_for(model) -> Any:
    """The ``Blip2Config`` whose shapes match a built SeViLA model (its sizes and LLM config)."""
    from transformers import AutoConfig, Blip2Config

    cfg = model.config
    vision = cfg.vision
    width = int(model.visual_encoder.num_features)
    llm_config = model.llm.module.config.to_dict()
    text = AutoConfig.for_model(**llm_config).to_dict()
    if "dense_act_fn" in llm_config:  # T5Config derives it from feed_forward_proj otherwise
        text["dense_act_fn"] = llm_config["dense_act_fn"]
    hidden = model.visual_encoder.blocks[0].mlp.fc1.out_features
    return Blip2Config(
        vision_config=dict(
            hidden_size=width, intermediate_size=hidden, num_hidden_layers=vision.depth,
            num_attention_heads=vision.num_heads, image_size=vision.img_size, patch_size=vision.patch_size,
            hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
        ),
        qformer_config=dict(
            vocab_size=cfg.qformer.vocab_size, hidden_size=cfg.qformer.hidden_size,
            num_hidden_layers=cfg.qformer.num_hidden_layers, num_attention_heads=cfg.qformer.num_attention_heads,
            intermediate_size=cfg.qformer.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=cfg.qformer.hidden_dropout_prob,
            attention_probs_dropout_prob=cfg.qformer.attention_probs_dropout_prob,
            max_position_embeddings=cfg.qformer.max_position_embeddings,
            initializer_range=cfg.qformer.initializer_range, layer_norm_eps=cfg.qformer.layer_norm_eps,
            cross_attention_frequency=cfg.qformer.cross_attention_freq, encoder_hidden_size=width,
        ),
        text_config=text,
        num_query_tokens=cfg.qformer.num_query_token,
    )


# -- command ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lavis_sevila.models.convert_hf",
        description="Convert BLIP-2 weights between Hugging Face's layout and LAVIS's (ours).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("from-hf", help="HF BLIP-2 (hub name or directory) -> our .pth (BLIP-2 layout)")
    a.add_argument("--input", required=True, help="hub name (owner/model) or local directory")
    a.add_argument("--output", required=True, help=".pth file to write")
    a.add_argument("--parts", choices=PARTS, default="all", help="shared: ViT, ln_vision, Q-Former, query tokens only")
    a.add_argument("--drop", action="append", default=[], help="fnmatch pattern of HF keys to leave out (repeatable)")
    b = sub.add_parser("to-hf", help="our .pth -> HF directory (config.json + safetensors)")
    b.add_argument("--input", required=True, help="our checkpoint (.pth, weights-only)")
    b.add_argument("--output", required=True, help="directory to write (must not exist unless --force)")
    target = b.add_mutually_exclusive_group(required=True)
    target.add_argument("--config", help="HF BLIP-2 config: config.json, directory or hub name")
    target.add_argument("--base", help="HF BLIP-2 whose config is used and which supplies parts the input lacks")
    b.add_argument("--role", choices=sorted(ROLES), help="which role becomes the BLIP-2 Q-Former (needed if both)")
    b.add_argument("--drop", action="append", default=[], help="fnmatch pattern of our keys to leave out (repeatable)")
    b.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "from-hf":
            config, state = read_hf(args.input, args.parts)
            out, report = from_hf(state, config, parts=args.parts, drop=args.drop, source=args.input)
            write_ours(out, args.output, converted_from=str(args.input), parts=args.parts)
        else:
            state = load_state_file(args.input)
            base = None
            if args.base:
                config, base = read_hf(args.base)
            else:
                config = load_hf_config(args.config)
            out, report = to_hf(state, config, role=args.role, drop=args.drop, base=base, source=args.input)
            write_hf(out, config, args.output, force=args.force)
    except (CheckpointError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
