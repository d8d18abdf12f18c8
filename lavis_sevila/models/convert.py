"""Moving weights between layouts, each move one named operation.

Today: initialising one role from the other (both roles start from one BLIP-2, as the
paper says; the tiny demo, which has no BLIP-2, starts its answerer from the localizer it
pre-trained).  Hugging Face ``Blip2ForConditionalGeneration`` <-> ours is
``convert_hf.py``; merging a localizer checkpoint with an answerer checkpoint is ``merge.py``.
"""
from __future__ import annotations

import torch
from torch import nn

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


def role_groups(suffix: str, proj_name: str) -> tuple[str, ...]:
    """Top-level state-dict groups of one role (suffix "" = answerer, "_loc" = localizer)."""
    return tuple(name + suffix for name in ("ln_vision", "Qformer", "query_tokens", proj_name))


@torch.no_grad()
def copy_role(model: nn.Module, proj_name: str, source: str, target: str) -> list[str]:
    """Overwrite every tensor of one role with its twin in the other (suffix "" or "_loc")."""
    state = model.state_dict()
    groups = dict(zip(role_groups(source, proj_name), role_groups(target, proj_name)))
    copied = []
    for key, value in state.items():
        group, _, rest = key.partition(".")
        if group in groups:
            twin = groups[group] + (f".{rest}" if rest else "")
            state[twin].copy_(value)
            copied.append(twin)
    expected = sum(1 for key in state if key.split(".", 1)[0] in groups.values())
    if len(copied) != expected:
        raise RuntimeError(f"copied {len(copied)} tensors into the {target or 'answerer'} role, expected {expected}")
    return copied

