"""What SeViLA's roles need from an LLM, and nothing more.

Both roles only ever (a) embed token ids, (b) read the logits of a few candidate tokens
at the first one or two greedy decoding steps, and (c) compute a teacher-forced loss on
a short target.  Keeping the interface that narrow is what lets an encoder-decoder
(Flan-T5, the paper) and a decoder-only LLM (OPT, Vicuna/LLaMA: ``llm/decoder.py``)
stand behind it.

Everything that differs between families is a class attribute of the family's class
(state keys, tokenizer class, padding side, EOS policy, prompt template, which decoding
step holds the option letter); ``models/layout.py`` reads them and is the one place that
builds LLM inputs.
"""
from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


@dataclass
class LLMInputs:
    """Input embeddings (prefix text, visual tokens, prompt) and their attention mask."""

    embeds: torch.Tensor  # [B, L, D]
    mask: torch.Tensor  # [B, L] long, 0 on padding

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def rows(self, start: int, stop: int) -> "LLMInputs":
        """Rows ``start:stop`` without the columns that are padding in all of them (padding
        is masked and positions count real tokens, so the rows' scores do not change)."""
        embeds, mask = self.embeds[start:stop], self.mask[start:stop]
        keep = real_columns(mask)
        return LLMInputs(embeds, mask) if keep is None else LLMInputs(embeds[:, keep], mask[:, keep])


def real_columns(mask: torch.Tensor) -> torch.Tensor | None:
    """The columns of ``mask`` [B, L] that hold a real token in some row, or None when all do
    (a chunk of rows padded to its own longest text rather than its batch's)."""
    keep = mask.bool().any(dim=0)
    return None if bool(keep.all()) else keep


@dataclass(frozen=True)
class PromptTemplate:
    """The text a family wraps around SeViLA's prompts (empty for Flan-T5: the paper's layout).

    A prompt is ``BOS? head ++ frame blocks ++ text ++ tail``; a frame block is
    ``"Frame i: " + image_open ++ visual tokens ++ image_close``.
    """

    head: str = ""
    image_open: str = ""
    image_close: str = ""
    tail: str = ""


@dataclass
class TeacherForced:
    loss: torch.Tensor  # mean over non-padding target tokens of the batch
    logits: torch.Tensor  # [B, T, V] at every target position


class LanguageModel(ABC):
    """A frozen LLM seen through the three operations SeViLA needs.

    Not an ``nn.Module``: the wrapped ``module`` is registered on the SeViLA model under
    the authors' name (``t5_model``), which checkpoints use as well.
    """

    #: the state-dict prefix the wrapped module lives under in SeViLA checkpoints
    state_key: str
    #: the checkpoint name of each role's projection into the LLM (``+ "_loc"`` for the localizer;
    #: inside the model it is ``roles.<role>.proj``, see convert.CheckpointLayout)
    proj_key: str
    #: "right": pad after the text (T5's encoder); "left": real tokens end every row, so the
    #: next-token logit after the prompt is the last position of every row (decoder-only)
    padding_side: str = "right"
    #: the prompt text is tokenised with the tokenizer's special tokens (T5: text + EOS)
    prompt_special_tokens: bool = True
    #: a BOS token starts the whole prompt (decoder-only: before the head, never mid-sequence)
    bos_first: bool = False
    #: targets end with EOS (T5's tokenizer appends it; decoder-only families append it)
    target_eos: bool = True
    #: prepended to target texts ("yes", "Option A") so their tokens are the ones that follow
    #: the prompt naturally (GPT-2-style BPE: " yes" is one token, "yes" after ":" another)
    target_lead: str = ""
    #: the greedy decoding step whose logits hold the option letter (T5: 2, after "Option"),
    #: and whether the target's tokens before the letter are appended to the prompt instead
    #: (decoder-only: "... Option" then the letter is step 1)
    answer_step: int = 2
    answer_prefix_in_prompt: bool = False
    template: PromptTemplate = PromptTemplate()
    #: peft LoRA target modules of this family (attention query and value projections)
    lora_targets: tuple[str, ...] = ()
    #: the ``model.llm.family`` name (set by :func:`register_family`)
    family: str

    @classmethod
    @abstractmethod
    def from_config(cls, config, tokenizer) -> "LanguageModel":
        """Build the LLM described by an ``LLMConfig`` (hub weights or random init)."""

    @classmethod
    @abstractmethod
    def load_tokenizer(cls, source: str):
        """The family's tokenizer from a hub name, a local directory or ``builtin:tiny``."""

    def __init__(self, module: nn.Module, tokenizer) -> None:
        self.module = module
        self.tokenizer = tokenizer

    @property
    def width(self) -> int:
        return self.module.get_input_embeddings().embedding_dim

    @property
    def dtype(self) -> torch.dtype:
        return self.module.get_input_embeddings().weight.dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module.get_input_embeddings()(ids)

    def compile(self) -> None:
        """``model.llm.compile``: torch.compile where the family has measured it to pay."""
        raise ValueError(f"model.llm.compile is implemented for the t5 family only, not {self.family!r}")

    def precision(self, device: torch.device):
        """bf16/fp16 autocast on CUDA (as the authors run T5); nothing on CPU."""
        if device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def cast(self, inputs: LLMInputs) -> LLMInputs:
        return LLMInputs(inputs.embeds.to(self.dtype), inputs.mask)

    @abstractmethod
    def greedy_step_logits(self, inputs: LLMInputs, steps: int) -> list[torch.Tensor]:
        """Raw logits [B, V] of decoding steps 1..steps, each step fed the previous argmax."""

    @abstractmethod
    def teacher_forced(self, inputs: LLMInputs, target_ids: torch.Tensor, target_mask: torch.Tensor) -> TeacherForced:
        """Loss and logits with the target fed to the decoder (-100 in target_ids = ignored)."""

    def teacher_forced_token_logits(
        self, inputs: LLMInputs, target_ids: torch.Tensor, target_mask: torch.Tensor, position: int,
        token_ids: Sequence[int],
    ) -> torch.Tensor:
        """Logits [B, len(token_ids)] of a few tokens at one target position, teacher-forced.

        What :meth:`teacher_forced` gives at ``logits[:, position, token_ids]``; families may
        override it to compute only that (the pseudo-labels read one position, five letters).
        """
        return self.teacher_forced(inputs, target_ids, target_mask).logits[:, position, list(token_ids)].float()

    def first_step_token_logits(self, inputs: LLMInputs, token_ids: Sequence[int]) -> torch.Tensor:
        """Logits [B, len(token_ids)] of a few tokens at the first decoding step.

        ``greedy_step_logits(inputs, 1)[0][:, token_ids]``; families may override it to compute
        only that (the localizer reads "yes" and "no" at step 1).
        """
        return self.greedy_step_logits(inputs, steps=1)[0][:, list(token_ids)]


#: family name -> the module that implements it (imported on first use, so a family's
#: transformers classes load only when that family is built)
FAMILIES: dict[str, str] = {
    "t5": "lavis_sevila.models.llm.t5",
    "opt": "lavis_sevila.models.llm.opt",
    "llama": "lavis_sevila.models.llm.llama",
}
_REGISTERED: dict[str, type[LanguageModel]] = {}


def register_family(name: str):
    """Class decorator: ``@register_family("t5")`` makes ``model.llm.family: t5`` build it."""

    def wrap(cls: type[LanguageModel]) -> type[LanguageModel]:
        if name in _REGISTERED and _REGISTERED[name] is not cls:
            raise ValueError(f"LLM family {name!r} is already registered by {_REGISTERED[name].__name__}")
        _REGISTERED[name] = cls
        cls.family = name
        return cls

    return wrap


def family_class(name: str) -> type[LanguageModel]:
    """The LanguageModel class of a family, importing its module if needed."""
    if name not in _REGISTERED and name in FAMILIES:
        importlib.import_module(FAMILIES[name])
    if name not in _REGISTERED:
        raise ValueError(f"unknown model.llm.family {name!r}; available: {sorted(set(FAMILIES) | set(_REGISTERED))}")
    return _REGISTERED[name]


def build_language_model(config, tokenizer) -> LanguageModel:
    """The LanguageModel for ``config.family`` (an ``LLMConfig``), compiled when asked."""
    llm = family_class(config.family).from_config(config, tokenizer)
    if getattr(config, "compile", False):
        llm.compile()
    return llm
