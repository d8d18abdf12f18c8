"""LoRA adapters on the LLM through peft, one adapter per role (``model.lora``).

peft injects its layers into the LLM in place (``inject_adapter_in_model``: no wrapper,
so the LLM stays under its checkpoint name, ``t5_model``).  Inside the model an adapted
linear layer then holds ``q.base_layer.weight`` and ``q.lora_A.<role>.weight``; at the
checkpoint boundary (``SeViLA.state_dict`` / ``load_state_dict``) the names are the
authors' again, with each role's adapter its own group:

    t5_model.<path>.q.base_layer.weight      <->  t5_model.<path>.q.weight
    t5_model.<path>.q.lora_A.answerer.weight <->  lora.<path>.q.lora_A.weight
    t5_model.<path>.q.lora_B.localizer.weight <-> lora_loc.<path>.q.lora_B.weight

so the base LLM loads from and saves to the usual layout, and a training checkpoint of a
LoRA stage holds the role's adapter group and its Q-Former/projection groups, never the LLM.
Each LLM call runs with the adapter of the role it serves (:meth:`LoRA.use`); a role
without an adapter runs the plain base LLM.  The vision tower is never adapted.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator, Mapping

import torch
from torch import nn

from lavis_sevila.models.config import LoRAConfig
from lavis_sevila.models.stages import ANSWERER, LOCALIZER

ROLE_GROUP = {ANSWERER: "lora", LOCALIZER: "lora_loc"}
_GROUP_ROLE = {v: k for k, v in ROLE_GROUP.items()}
_ADAPTER = re.compile(r"^(?P<path>.*)\.(?P<kind>lora_[AB])\.(?P<role>[a-z]+)\.(?P<rest>[^.]+)$")


class LoRA:
    """The adapters of one LLM module and the key conversion at the checkpoint boundary."""

    def __init__(self, module: nn.Module, llm_key: str, config: LoRAConfig, family_targets: tuple[str, ...]) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        self.llm_key = llm_key
        self.roles = tuple(config.roles)
        self.targets = tuple(config.target_modules or family_targets)
        if not self.targets:
            raise ValueError("this LLM family names no LoRA target modules; set model.lora.target_modules")
        peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(self.targets), bias="none")
        for role in self.roles:
            inject_adapter_in_model(peft_config, module, adapter_name=role)
        self.layers = [m for m in module.modules() if hasattr(m, "lora_A") and hasattr(m, "set_adapter")]
        if not self.layers:
            raise ValueError(f"no module of the LLM matches model.lora.target_modules {list(self.targets)}")
        self.module = module
        self.config = config
        self._current: str | None = None
        self.activate(None)

    # -- which adapter runs ----------------------------------------------------------------
    def activate(self, role: str | None) -> None:
        """Run ``role``'s adapter (None or a role without one: the base LLM alone).

        peft's ``set_adapter`` also sets ``requires_grad``; trainability is the stage's
        business (``SeViLA.set_stage``), so the flags are put back as they were.
        """
        if role == self._current:
            return
        flags = [(p, p.requires_grad) for layer in self.layers for p in layer.parameters()]
        for layer in self.layers:
            if role in self.roles:
                layer.set_adapter(role)
                layer.enable_adapters(True)
            else:
                layer.enable_adapters(False)
        for param, flag in flags:
            param.requires_grad_(flag)
        self._current = role

    @contextlib.contextmanager
    def use(self, role: str) -> Iterator[None]:
        previous = self._current
        self.activate(role)
        try:
            yield
        finally:
            self.activate(previous)

    # -- key conversion ----------------------------------------------------------------------
    def file_key(self, key: str) -> str:
        """A model key in the checkpoint layout (see the module docstring)."""
        prefix = self.llm_key + "."
        if not key.startswith(prefix):
            return key
        if ".base_layer." in key:
            return key.replace(".base_layer.", ".")
        match = _ADAPTER.match(key[len(prefix):])
        if match and match["role"] in ROLE_GROUP:
            return f"{ROLE_GROUP[match['role']]}.{match['path']}.{match['kind']}.{match['rest']}"
        return key

    def to_file(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {self.file_key(k): v for k, v in state.items()}

    def from_file(self, state: Mapping[str, torch.Tensor], model_keys) -> dict[str, torch.Tensor]:
        inverse = {self.file_key(k): k for k in model_keys}
        return {inverse.get(k, k): v for k, v in state.items()}

    def manifest(self) -> dict:
        return {
            "roles": list(self.roles), "r": self.config.r, "alpha": self.config.alpha, "dropout": self.config.dropout,
            "target_modules": list(self.targets),
            "contents": "LoRA adapter weights (groups lora / lora_loc) and the trained role's Q-Former, query "
                        "tokens, LayerNorm and projection; the base LLM is not in this file (it comes from "
                        "model.llm.name_or_path / model.pretrained)",
        }
