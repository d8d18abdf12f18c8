"""Our module tree <-> the authors' flat checkpoint layout, in one place; moves between roles.

Inside the model each role is one module (``SeViLA.roles[role]``, a ``RoleModule`` with
``ln``, ``qformer``, ``query_tokens``, ``proj``), and a role's LoRA adapter lives where peft
puts it, inside the LLM.  Checkpoints are written, and read, in the authors' flat layout,
so their code loads our files and ours loads theirs (BLIP-2's ``.pth``,
``sevila_pretrained.pth``, and our own files of any version).  :class:`CheckpointLayout` is
the one translation, applied when loading and saving (``checkpoint.file_state`` /
``checkpoint.load_into``):

    roles.answerer.ln.*                  <->  ln_vision.*
    roles.answerer.qformer.*             <->  Qformer.*
    roles.answerer.query_tokens          <->  query_tokens
    roles.answerer.proj.*                <->  t5_proj.*  (the family's proj_key: opt_proj, llama_proj)
    roles.localizer.<part>               <->  the same name + "_loc" (Qformer_loc.*, t5_proj_loc.*, ...)
    <llm>.<layer>.base_layer.<leaf>      <->  <llm>.<layer>.<leaf>           (a LoRA-adapted layer)
    <llm>.<layer>.lora_A.<role>.<leaf>   <->  lora.<layer>.lora_A.<leaf>     (lora_loc for the localizer)
    visual_encoder.*, <llm>.* (others)   unchanged (<llm>: t5_model, opt_model, llama_model)

Also here: initialising one role from the other (both roles start from one BLIP-2, as the
paper says; the tiny demo, which has no BLIP-2, starts its answerer from the localizer it
pre-trained).  Hugging Face ``Blip2ForConditionalGeneration`` <-> the authors' layout is
``convert_hf.py``; merging a localizer file with an answerer file is ``merge.py``.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, TypeVar

import torch
from torch import nn

from lavis_sevila.models.checkpoint import group_of
from lavis_sevila.models.stages import ANSWERER, LOCALIZER, ROLES

#: keys of a BLIP-2 stage-1 Q-Former (text embeddings, text FFNs, LM head) that SeViLA
#: removes; list them in model.allow_unexpected to load such a checkpoint
BLIP2_QFORMER_TEXT_PARTS = (
    "Qformer.cls.*",
    "Qformer.bert.embeddings.word_embeddings.*",
    "Qformer.bert.embeddings.position_embeddings.*",
    "Qformer.bert.encoder.layer.*.intermediate.dense.*",
    "Qformer.bert.encoder.layer.*.output.dense.*",
    "Qformer.bert.encoder.layer.*.output.LayerNorm.*",
)

#: a role module's parts, in the order the authors' groups are listed
ROLE_PARTS = ("ln", "qformer", "query_tokens", "proj")
_AUTHORS_PART = {"ln": "ln_vision", "qformer": "Qformer", "query_tokens": "query_tokens"}  # proj: the family's
_AUTHORS_SUFFIX = {ANSWERER: "", LOCALIZER: "_loc"}
#: the file group of each role's LoRA adapter
ADAPTER_GROUP = {ANSWERER: "lora", LOCALIZER: "lora_loc"}
_ADAPTER = re.compile(r"^(?P<layer>.*)\.(?P<kind>lora_[AB])\.(?P<role>[a-z]+)\.(?P<leaf>[^.]+)$")

V = TypeVar("V")


def role_groups(role: str, proj_key: str) -> tuple[str, ...]:
    """The authors' groups of one role (ROLE_PARTS order): ``ln_vision_loc, Qformer_loc, ...``."""
    if role not in _AUTHORS_SUFFIX:
        raise ValueError(f"unknown role {role!r}; roles: {ROLES}")
    suffix = _AUTHORS_SUFFIX[role]
    return tuple(_AUTHORS_PART.get(part, proj_key) + suffix for part in ROLE_PARTS)


class CheckpointLayout:
    """Key translation between the model tree and checkpoint files (module docstring).

    ``adapted``: the LoRA-adapted layers, as paths inside the LLM module (``encoder.block.0.
    layer.0.SelfAttention.q``); needed to put a file's ``<llm>.<layer>.weight`` back under
    the layer's ``base_layer``.
    """

    def __init__(self, llm_key: str, proj_key: str, adapted: Iterable[str] = ()) -> None:
        self.llm_key = llm_key
        self.proj_key = proj_key
        self.adapted = frozenset(adapted)
        self._file_group = {
            f"roles.{role}.{part}": group
            for role in ROLES
            for part, group in zip(ROLE_PARTS, role_groups(role, proj_key))
        }
        self._tree_prefix = {group: prefix for prefix, group in self._file_group.items()}
        self._adapter_role = {group: role for role, group in ADAPTER_GROUP.items()}
        # the authors' model registers query_tokens[_loc] as its own parameters, which PyTorch
        # lists before its submodules: files keep that order, and so does the optimizer
        # (SeViLA.trainable_parameters), so optimizer state in checkpoints keeps its meaning
        self._listed_first = tuple(role_groups(role, proj_key)[ROLE_PARTS.index("query_tokens")] for role in ROLES)

    def file_key(self, key: str) -> str:
        """A model key (parameter or buffer name) as checkpoints name it; a file key is kept."""
        if key.startswith("roles."):
            parts = key.split(".", 3)
            group = self._file_group.get(".".join(parts[:3]))
            if group is not None:
                return group + ("." + parts[3] if len(parts) > 3 else "")
            return key
        prefix = self.llm_key + "."
        if self.adapted and key.startswith(prefix):
            inner = key[len(prefix):]
            if ".base_layer." in inner:
                return prefix + inner.replace(".base_layer.", ".", 1)
            match = _ADAPTER.match(inner)
            if match and match["role"] in ADAPTER_GROUP:
                return f"{ADAPTER_GROUP[match['role']]}.{match['layer']}.{match['kind']}.{match['leaf']}"
        return key

    def tree_key(self, key: str) -> str:
        """A checkpoint key as the model names it (keys the model lacks are returned as they are)."""
        group, dot, rest = key.partition(".")
        if group in self._tree_prefix:
            return self._tree_prefix[group] + dot + rest
        if group in self._adapter_role:
            layer, _, tail = rest.rpartition(".lora_")
            kind, _, leaf = tail.partition(".")
            if layer and kind in ("A", "B") and leaf:
                return f"{self.llm_key}.{layer}.lora_{kind}.{self._adapter_role[group]}.{leaf}"
            return key
        if group == self.llm_key and self.adapted:
            layer, _, leaf = rest.rpartition(".")
            if layer in self.adapted:
                return f"{self.llm_key}.{layer}.base_layer.{leaf}"
        return key

    def to_file(self, state: Mapping[str, V]) -> dict[str, V]:
        """A model state (or any name -> value mapping) under checkpoint names, in the authors' order."""
        mapped = [(self.file_key(key), value) for key, value in state.items()]
        mapped.sort(key=lambda item: group_of(item[0]) not in self._listed_first)  # stable
        out = dict(mapped)
        if len(out) != len(mapped):
            raise ValueError("two model keys map to one checkpoint key")
        return out

    def from_file(self, state: Mapping[str, V]) -> dict[str, V]:
        """A checkpoint state under the model's names."""
        return {self.tree_key(key): value for key, value in state.items()}


@torch.no_grad()
def copy_role(source: nn.Module, target: nn.Module) -> list[str]:
    """Overwrite every tensor (parameters and buffers) of one role module with the other's."""
    given, own = source.state_dict(), target.state_dict()
    differ = sorted(k for k in set(given) | set(own) if k not in given or k not in own or given[k].shape != own[k].shape)
    if differ:
        raise RuntimeError(f"the two roles have different architectures: {differ[:5]}")
    for key, value in given.items():
        own[key].copy_(value)
    return sorted(own)
