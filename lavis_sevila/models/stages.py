"""Named training stages and what each one trains.

The authors' fork picks behaviour from substrings of a ``task`` string and freezes
modules by setting ``requires_grad`` on the module object (which freezes nothing).
Here a stage is an explicit name; :func:`apply_stage` sets ``requires_grad`` on every
parameter, so "frozen" means frozen and the optimizer never sees those parameters.
"""
from __future__ import annotations

from enum import Enum

ANSWERER = "answerer"
LOCALIZER = "localizer"
ROLES = (ANSWERER, LOCALIZER)


class Stage(str, Enum):
    # stage 0, tiny backbones only: the stand-in for BLIP-2 pre-training (image-text pairs
    # on single frames); trains the answerer's Q-Former, and the ViT/LLM unless frozen
    PRETRAIN_BACKBONE = "pretrain_backbone"
    PRETRAIN_LOCALIZER = "pretrain_localizer"  # QVHighlights per-frame yes/no labels
    FINETUNE_ANSWERER = "finetune_answerer"  # forward chain: frozen localizer picks k of n frames
    REFINE_LOCALIZER = "refine_localizer"  # reverse chain: frozen answerer's pseudo-labels
    ANSWER_UNIFORM = "answer_uniform"  # answerer on uniformly sampled frames (BLIP-2 concat)
    INFER = "infer"  # nothing trains

    @classmethod
    def parse(cls, value: "str | Stage") -> "Stage":
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown stage {value!r}; known stages: {names}") from None

    @property
    def trained_role(self) -> str | None:
        return _TRAINED_ROLE[self]

    @property
    def frozen_role(self) -> str | None:
        """The role that runs under no_grad to feed the trained one (None if none runs)."""
        return _FROZEN_HELPER[self]


_TRAINED_ROLE = {
    Stage.PRETRAIN_BACKBONE: ANSWERER,
    Stage.PRETRAIN_LOCALIZER: LOCALIZER,
    Stage.FINETUNE_ANSWERER: ANSWERER,
    Stage.REFINE_LOCALIZER: LOCALIZER,
    Stage.ANSWER_UNIFORM: ANSWERER,
    Stage.INFER: None,
}
_FROZEN_HELPER = {
    Stage.PRETRAIN_BACKBONE: None,
    Stage.PRETRAIN_LOCALIZER: None,
    Stage.FINETUNE_ANSWERER: LOCALIZER,
    Stage.REFINE_LOCALIZER: ANSWERER,
    Stage.ANSWER_UNIFORM: None,
    Stage.INFER: None,
}
