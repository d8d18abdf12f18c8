"""LoRA adapters on the LLM through peft, one adapter per role (``model.lora``).

peft injects its layers into the LLM in place (``inject_adapter_in_model``: no wrapper,
so the LLM stays under its checkpoint name, ``t5_model``).  Inside the model an adapted
linear layer then holds ``q.base_layer.weight`` and ``q.lora_A.<role>.weight``; checkpoint
files name them ``t5_model.<layer>.q.weight`` and ``lora[_loc].<layer>.q.lora_A.weight``
(each role's adapter its own group; the translation is ``convert.CheckpointLayout``), so
the base LLM loads from and saves to the usual layout, and a training checkpoint of a LoRA
stage holds the role's adapter group and its Q-Former/projection groups, never the LLM.
Each LLM call runs with the adapter of the role it serves (:meth:`LoRA.use`); a role
without an adapter runs the plain base LLM.  The vision tower is never adapted.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from lavis_sevila.models.config import LoRAConfig


class LoRA:
    """The adapters of one LLM module, one per role, and which one runs."""

    def __init__(self, module: nn.Module, config: LoRAConfig, family_targets: tuple[str, ...]) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        self.roles = tuple(config.roles)
        self.targets = tuple(config.target_modules or family_targets)
        if not self.targets:
            raise ValueError("this LLM family names no LoRA target modules; set model.lora.target_modules")
        peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(self.targets), bias="none")
        for role in self.roles:
            inject_adapter_in_model(peft_config, module, adapter_name=role)
        named = [(n, m) for n, m in module.named_modules() if hasattr(m, "lora_A") and hasattr(m, "set_adapter")]
        #: the adapted layers' paths inside the LLM (what checkpoint names need, convert.py)
        self.layer_names = tuple(name for name, _ in named)
        self.layers = [m for _, m in named]
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

    def parameters_of(self, role: str) -> list[nn.Parameter]:
        """The parameters of ``role``'s adapter (empty for a role without one)."""
        if role not in self.roles:
            return []
        return [p for layer in self.layers for part in (layer.lora_A, layer.lora_B) for p in part[role].parameters()]

    def manifest(self) -> dict:
        return {
            "roles": list(self.roles), "r": self.config.r, "alpha": self.config.alpha, "dropout": self.config.dropout,
            "target_modules": list(self.targets),
            "contents": "LoRA adapter weights (groups lora / lora_loc) and the trained role's Q-Former, query "
                        "tokens, LayerNorm and projection; the base LLM is not in this file (it comes from "
                        "model.llm.name_or_path / model.pretrained)",
        }
