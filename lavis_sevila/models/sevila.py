"""SeViLA: one BLIP-2 backbone in two roles, Localizer and Answerer (spec sections 1-6).

Each role is one module, ``roles[role]`` (``RoleModule``: a LayerNorm, a Q-Former, query
tokens and a projection into the LLM, plus its LoRA adapter inside the LLM when configured);
the ViT and the LLM are shared, and the ViT output of a frame is computed once and used by
both roles.  Checkpoints keep the authors' flat layout (``visual_encoder``,
``ln_vision[_loc]``, ``Qformer[_loc]``, ``query_tokens[_loc]``, ``t5_proj[_loc]``,
``t5_model``), so their checkpoints load and ours load in their code; ``checkpoint_layout``
(convert.py) translates between the two when loading and saving.

Reading order: role tokens -> localizer (frame scores) -> answerer (option scores) ->
chains (forward: keyframes -> answer; reverse: per-frame answers -> pseudo-labels) ->
stage losses -> evaluation modes -> public API.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from lavis.common.registry import registry
from lavis.models.base_model import BaseModel
from omegaconf import OmegaConf
from torch import nn

from lavis_sevila.data import prompts
from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.models.config import SeViLAConfig
from lavis_sevila.models.convert import ADAPTER_GROUP, CheckpointLayout, copy_role, role_groups
from lavis_sevila.models.feature_cache import FeatureCache, ModuleFingerprint, PseudoLabelCache, encode_unique
from lavis_sevila.models.keyframes import build_selector
from lavis_sevila.models.layout import PromptLayout
from lavis_sevila.models.lora import LoRA
from lavis_sevila.models.llm import LLMInputs, build_language_model, family_class
from lavis_sevila.models.pretrained import resolve_file
from lavis_sevila.models.qformer import RoleModule
from lavis_sevila.models.stages import ANSWERER, LOCALIZER, ROLES, Stage
from lavis_sevila.models.tokenizer import derive_token_ids
from lavis_sevila.models.vision import build_vision_encoder, freeze_module, vision_width

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"
#: CPU localizer chunks: about this many activations [rows, tokens, d_model] per LLM call
CPU_CHUNK_ELEMENTS = 3 << 18
EVAL_MODES = ("chain", "chain_single", "uniform", "per_frame", "localize")


def option_counts(counts: Any, letters: int) -> torch.Tensor:
    """Per-row option counts [B] as a long tensor; 0 (unknown) means all ``letters`` read."""
    counts = torch.as_tensor(counts).long().cpu()
    counts = torch.where(counts > 0, counts, torch.full_like(counts, letters))
    if int(counts.max()) > letters:
        raise ValueError(f"a question has {int(counts.max())} options but only {letters} option letters are read")
    return counts


@dataclass
class FrameLogits:
    """First-decoder-step logits of "yes" and "no" per frame, [B, T] each."""

    yes: torch.Tensor
    no: torch.Tensor


@dataclass
class Answer:
    """What :meth:`SeViLA.answer` returns for one question."""

    index: int
    probabilities: list[float]  # softmax over the option-letter logits
    keyframes: list[int]  # indices into the sampled frames, time order
    frame_scores: list[float]  # localizer "yes" logit of every sampled frame


@registry.register_model("sevila")
class SeViLA(BaseModel):
    PRETRAINED_MODEL_CONFIG_DICT = {
        "pretrain_flant5xl": "sevila_pretrain_flant5xl.yaml",
        "pretrain_opt2.7b": "sevila_pretrain_opt2.7b.yaml",
        "minigpt4_vicuna7b": "sevila_minigpt4_vicuna7b.yaml",
        "tiny": "sevila_tiny.yaml",
        "tiny_opt": "sevila_tiny_opt.yaml",
        "tiny_llama": "sevila_tiny_llama.yaml",
    }

    def __init__(self, config: SeViLAConfig) -> None:
        super().__init__()
        self.config = config
        family = family_class(config.llm.family)  # owns its tokenizer class and target tokens
        tokenizer = family.load_tokenizer(config.tokenizer)
        self.token_ids = derive_token_ids(tokenizer, family.target_lead)
        self.visual_encoder = build_vision_encoder(config.vision)
        width = vision_width(self.visual_encoder)
        self.llm = build_language_model(config.llm, tokenizer)
        self.add_module(self.llm.state_key, self.llm.module)  # the authors' name: t5_model, opt_model, ...
        self.roles = nn.ModuleDict({role: RoleModule(config.qformer, width, self.llm.width) for role in ROLES})
        self.layout = PromptLayout(self.llm, config.max_txt_len)
        self.lora = None
        if config.lora is not None and config.lora.roles:
            self.lora = LoRA(self.llm.module, config.lora, self.llm.lora_targets)
        self.checkpoint_layout = CheckpointLayout(
            self.llm.state_key, self.llm.proj_key, self.lora.layer_names if self.lora is not None else ())
        self.select_keyframes = build_selector(config.keyframe_selection, config.keyframe_selection_args)
        self.stage = Stage.INFER
        self.weight_sources: dict[str, str] = {}
        self.feature_cache = (
            FeatureCache(int(config.feature_cache_mb * 2**20), config.feature_cache_dir)
            if config.feature_cache_mb or config.feature_cache_dir else None
        )
        self._vit_fingerprint = ModuleFingerprint(self.visual_encoder, config.to_dict()["vision"])
        self.pseudo_label_cache = PseudoLabelCache() if config.pseudo_label_cache else None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
            raise ValueError(f"unknown SeViLA model_type {model_type!r}; known: {sorted(cls.PRETRAINED_MODEL_CONFIG_DICT)}")
        return str(CONFIG_DIR / cls.PRETRAINED_MODEL_CONFIG_DICT[model_type])

    @classmethod
    def from_config(cls, cfg: Any) -> "SeViLA":
        raw = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        config = SeViLAConfig.from_dict(raw)
        model = cls(config)
        model.load_weights()
        model.set_stage(config.stage)
        return model

    @classmethod
    def from_model_type(cls, model_type: str, **overrides: Any) -> "SeViLA":
        """Build a known model type from Python, with dotted-key overrides (no config file)."""
        cfg = OmegaConf.load(cls.default_config_path(model_type)).model
        for key, value in overrides.items():
            OmegaConf.update(cfg, key, value, merge=True)
        return cls.from_config(cfg)

    def load_weights(self) -> None:
        """BLIP-2 answerer -> localizer init -> SeViLA checkpoints -> answerer init, loudly."""
        config = self.config
        self.weight_sources = {}
        if config.vision.weights:
            self.weight_sources["visual_encoder"] = config.vision.weights
        if config.llm.name_or_path:
            self.weight_sources[self.llm.state_key] = config.llm.name_or_path
        if self.lora is not None:  # adapters start as peft initialises them (B = 0: the base LLM exactly)
            for role in self.lora.roles:
                self.weight_sources[ADAPTER_GROUP[role]] = "LoRA init (B = 0)"
        for source in config.pretrained:
            self.load_checkpoint(source)
        if config.localizer_init == "answerer":
            self.init_role_from(ANSWERER, LOCALIZER)
        for source in config.finetuned:
            self.load_checkpoint(source)
        if config.answerer_init == "localizer":
            self.init_role_from(LOCALIZER, ANSWERER)
        unloaded = sorted({ckpt.group_of(k) for k in ckpt.file_state(self)} - set(self.weight_sources))
        if unloaded and not config.allow_random_init:
            raise ckpt.CheckpointError(
                f"no weights for {', '.join(unloaded)}; give model.pretrained / model.finetuned, "
                "or set model.allow_random_init: true to start from random weights"
            )
        if unloaded:
            logger.info("random initialisation kept for: %s", ", ".join(unloaded))

    def init_role_from(self, source: str, target: str) -> None:
        """Start one role as a copy of the other (the paper: localizer = BLIP-2's answerer).

        The role module's tensors, not its LoRA adapter; ``weight_sources`` follows the copy.
        """
        copy_role(self.roles[source], self.roles[target])
        proj = self.llm.proj_key
        for group, twin in zip(role_groups(source, proj), role_groups(target, proj)):
            if group in self.weight_sources:
                self.weight_sources[twin] = f"copy of {group}"
            else:
                self.weight_sources.pop(twin, None)

    def load_checkpoint(self, url_or_filename: str) -> ckpt.LoadReport:
        """Load a BLIP-2 or SeViLA checkpoint (weights-only, checked; see checkpoint.py)."""
        path = resolve_file(url_or_filename)
        state = ckpt.load_state_file(path)
        report = ckpt.load_into(self, state, source=str(url_or_filename), allow_unexpected=self.config.allow_unexpected)
        for group in report.loaded:
            self.weight_sources[group] = str(url_or_filename)
        return report

    def load_from_pretrained(self, url_or_filename: str) -> ckpt.LoadReport:  # LAVIS's name for it
        return self.load_checkpoint(url_or_filename)

    # -- the checkpoint boundary (the authors' layout: self.checkpoint_layout, convert.py) --------
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters that train, under their checkpoint names, in the authors' order.

        The optimizer takes them in this order, so a checkpoint's optimizer state does not
        depend on our module tree (and files written before the roles became modules resume).
        """
        named = self.checkpoint_layout.to_file(dict(self.named_parameters()))
        return [(name, param) for name, param in named.items() if param.requires_grad]

    def checkpoint_notes(self) -> dict[str, Any]:
        """What a training checkpoint's manifest says beyond its keys (LoRA: adapters only)."""
        return {"lora": self.lora.manifest()} if self.lora is not None else {}

    @contextlib.contextmanager
    def serving(self, role: str) -> Iterator[None]:
        """LLM calls inside run with ``role``'s LoRA adapter (nothing to switch without LoRA)."""
        if self.lora is None:
            yield
        else:
            with self.lora.use(role):
                yield

    # -- stages ------------------------------------------------------------------------
    def set_stage(self, stage: Stage | str) -> list[str]:
        """Make exactly the stage's parameters trainable; return their checkpoint names.

        The trained role's module and its LoRA adapter; the ViT and the base LLM only when
        ``freeze_vit`` / ``freeze_llm`` are false (tiny backbones without pre-trained
        knowledge).  Everything else is frozen for real.
        """
        stage = Stage.parse(stage)
        self.stage = stage
        self.requires_grad_(False)
        role = stage.trained_role
        if role is not None:
            self.roles[role].requires_grad_(True)
            if self.lora is not None:
                for param in self.lora.parameters_of(role):
                    param.requires_grad_(True)
            if not self.config.freeze_llm:
                adapters = {id(p) for r in self.lora.roles for p in self.lora.parameters_of(r)} if self.lora else set()
                for param in self.llm.module.parameters():
                    if id(param) not in adapters:
                        param.requires_grad_(True)
        if self.config.freeze_vit or stage is Stage.INFER:
            freeze_module(self.visual_encoder)
        else:
            self.visual_encoder.__dict__.pop("train", None)  # undo an earlier freeze_module
            self.visual_encoder.requires_grad_(True)
        return [name for name, _ in self.trainable_parameters()]

    # -- shared pieces -----------------------------------------------------------------
    def encode_frames(self, video: torch.Tensor, clip_keys: Sequence[str] | None = None) -> torch.Tensor:
        """ViT features [B, T, P, D] of a batch of videos [B, T, 3, H, W], computed once.

        With the batch's ``clip_key``s, each distinct clip is encoded once per batch and,
        when the ViT is frozen, looked up in / stored into ``self.feature_cache``.
        """
        feats, clips = self.encode_clips(video, clip_keys)
        return feats if clip_keys is None else feats.index_select(0, clips)

    def encode_clips(self, video: torch.Tensor, clip_keys: Sequence[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the batch's distinct clips [U, T, P, D] and each row's clip [B] (feature_cache.py)."""
        vit = self.visual_encoder
        fixed = not vit.training and not any(p.requires_grad for p in vit.parameters())
        cache = self.feature_cache if fixed else None
        return encode_unique(self._encode_pixels, video, clip_keys if fixed else None, cache, self._vit_fingerprint)

    def _encode_pixels(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        pixels = video.reshape(b * t, *video.shape[2:])
        weight = self.visual_encoder.patch_embed.proj.weight
        if weight.dtype != torch.float32 and pixels.device.type != "cuda":
            raise RuntimeError("vision.precision fp16 needs a CUDA device; use vision.precision=fp32 on CPU")
        precision = (
            torch.autocast("cuda", dtype=weight.dtype)
            if pixels.device.type == "cuda" and weight.dtype != torch.float32
            else contextlib.nullcontext()
        )
        grad = torch.enable_grad() if weight.requires_grad and torch.is_grad_enabled() else torch.no_grad()
        with precision, grad:
            feats = self.visual_encoder(pixels)
        return feats.float().reshape(b, t, *feats.shape[1:])

    def role_tokens(self, role: str, feats: torch.Tensor) -> torch.Tensor:
        """LLM input tokens [N, Q, D_llm] of one role for frame features [N, P, D]."""
        return self.roles[role](feats)

    def letter_ids(self, num_options: int | None = None) -> list[int]:
        return list(self.token_ids.letters[: num_options or self.config.answer_num])

    @staticmethod
    def mask_options(logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        """Letter logits [B, ..., A] with each row's letters past its own option count at -inf.

        A batch may mix questions with 2 and 5 options; the letters are read up to the
        largest count, so a row must never pick (or vote for) a letter it does not have.
        ``counts`` [B] (None: no masking); a count of 0 (no options known) masks nothing.
        """
        if counts is None:
            return logits
        counts = option_counts(counts, logits.shape[-1]).to(logits.device)
        letters = torch.arange(logits.shape[-1], device=logits.device)
        beyond = letters >= counts.reshape(-1, *([1] * (logits.dim() - 1)))
        return logits.masked_fill(beyond, float("-inf"))

    def _single_frame_inputs(self, role: str, feats: torch.Tensor, texts: Sequence[str]) -> LLMInputs:
        """Image layout for every frame of [B, T, P, D] features: B*T rows, text repeated."""
        t = feats.shape[1]
        visual = self.role_tokens(role, feats.flatten(0, 1))
        return self.layout.single_frame(visual, self.layout.tokenize(texts, feats.device).repeat(t))

    def frame_tokens(self, role: str, feats: torch.Tensor, indices: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """``role``'s LLM tokens [B, k, Q, D] of frames ``indices`` [B, k] of clips ``clips`` [B]
        of ``feats`` [U, T, P, D], each distinct (clip, frame) through the Q-Former once
        (the questions of one video often pick the same keyframes)."""
        rows = (clips.to(indices.device)[:, None] * feats.shape[1] + indices).reshape(-1)
        distinct, inverse = torch.unique(rows, return_inverse=True)
        tokens = self.role_tokens(role, feats.flatten(0, 1).index_select(0, distinct))
        return tokens.index_select(0, inverse).reshape(*indices.shape, *tokens.shape[1:])

    def _video_inputs(self, feats: torch.Tensor, qa_texts: Sequence[str]) -> LLMInputs:
        """Answerer video layout on k frames [B, k, P, D]."""
        visual = self.role_tokens(ANSWERER, feats.flatten(0, 1))
        return self.layout.video(visual.reshape(*feats.shape[:2], *visual.shape[1:]), qa_texts)

    # -- localizer ---------------------------------------------------------------------
    def frame_logits(self, feats: torch.Tensor, loc_texts: Sequence[str], clips: torch.Tensor | None = None) -> FrameLogits:
        """Localizer "yes"/"no" logits [B, T] at the first decoder step for every frame.

        ``clips`` [B]: question b reads clip ``clips[b]`` of ``feats`` [U, T, P, D] (the
        questions of one video share its frames; the localizer's Q-Former, which does not
        read the text, then runs once per frame).  None: one clip per question.
        ``localizer_chunk_size`` bounds the (frame, question) rows per LLM call.
        """
        yes, no = [], []
        for _, _, inputs in self._localizer_chunks(feats, loc_texts, clips):
            with self.serving(LOCALIZER):
                logits = self.llm.first_step_token_logits(inputs, (self.token_ids.yes, self.token_ids.no))
            yes.append(logits[:, 0])
            no.append(logits[:, 1])
        b = feats.shape[0] if clips is None else len(clips)
        return FrameLogits(torch.cat(yes).reshape(b, -1), torch.cat(no).reshape(b, -1))

    def _localizer_chunks(
        self, feats: torch.Tensor, loc_texts: Sequence[str], clips: torch.Tensor | None = None
    ) -> Iterator[tuple[int, int, LLMInputs]]:
        """The localizer's LLM inputs of every (question, frame) row, question-major, in chunks
        of ``localizer_chunk_size`` rows (null: :meth:`_auto_chunk`), each padded to its own
        longest text: ``(start, stop, inputs)`` per chunk.  ``clips`` as in :meth:`frame_logits`."""
        t = feats.shape[1]
        b = feats.shape[0] if clips is None else len(clips)
        text = self.layout.tokenize(loc_texts, feats.device).repeat(t)
        flat = feats.flatten(0, 1)
        shared = frame_of_row = None
        if clips is not None:
            shared = self.role_tokens(LOCALIZER, flat)  # [U*T, Q, D]
            frame_of_row = (clips.to(feats.device)[:, None] * t + torch.arange(t, device=feats.device)).reshape(-1)
        chunk = self.config.localizer_chunk_size or self._auto_chunk(b * t, visual_tokens=self.config.qformer.num_query_token,
                                                                      text_tokens=text.ids.shape[1], device=feats.device)
        for start in range(0, b * t, chunk):
            stop = start + chunk
            if shared is None:
                visual = self.role_tokens(LOCALIZER, flat[start:stop])
            else:
                visual = shared.index_select(0, frame_of_row[start:stop])
            yield start, stop, self.layout.single_frame(visual, text.rows(start, stop).trimmed())

    def _auto_chunk(self, rows: int, visual_tokens: int, text_tokens: int, device: torch.device) -> int:
        """Rows per localizer LLM call when ``localizer_chunk_size`` is null: all of them on a
        GPU; on a CPU about CPU_CHUNK_ELEMENTS activations [rows, tokens, d_model] per call, so
        the encoder's intermediates stay in cache (measured: 32 rows of the medium shape ran
        the chain about 1.2x faster than 256 at once; docs/speed.md)."""
        if device.type == "cuda":
            return rows
        per_row = (visual_tokens + text_tokens + 4) * self.llm.width
        return max(1, min(rows, CPU_CHUNK_ELEMENTS // per_row))

    def localizer_loss(self, feats: torch.Tensor, loc_texts: Sequence[str], labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced loss of "yes"/"no" per frame; ``labels`` [B, T] bool.

        The mean over all rows' target tokens, which is what one LLM call over all B*T rows
        (the authors') gives, computed over :meth:`_localizer_chunks`: still one graph and one
        ``backward``, but on a CPU each chunk's forward and backward stay in cache
        (docs/speed.md: the refinement step).
        """
        words = self.layout.targets([prompts.NO, prompts.YES], feats.device)  # row 0 "no", row 1 "yes"
        pick = labels.reshape(-1).long()
        ids, mask = words.ids[pick], words.mask[pick]
        losses, tokens = [], []
        for start, stop, inputs in self._localizer_chunks(feats, loc_texts):
            with self.serving(LOCALIZER):
                losses.append(self.llm.teacher_forced(inputs, ids[start:stop], mask[start:stop]).loss)
            tokens.append((ids[start:stop] != -100).sum())
        if len(losses) == 1:
            return losses[0]
        counts = torch.stack(tokens).to(losses[0].dtype)
        return (torch.stack(losses) * counts).sum() / counts.sum()

    # -- answerer ----------------------------------------------------------------------
    def answer_logits(self, feats: torch.Tensor, qa_texts: Sequence[str], num_options: int | None = None) -> torch.Tensor:
        """Option-letter logits [B, A] from k frames [B, k, P, D] (video layout).

        Read at decoder step 2 after the greedy step-1 token, per sample, as the authors'
        ``generate(...).scores[1]`` (a sample that emits EOS at step 1 is still read at
        step 2, conditioned on that EOS).
        """
        return self._read_letters(self._video_inputs(feats, qa_texts), num_options)

    def answer_logits_per_frame(
        self, feats: torch.Tensor, qa_texts: Sequence[str], num_options: int | None = None
    ) -> torch.Tensor:
        """Option-letter logits [B, T, A] answering from each frame alone (image layout)."""
        b, t = feats.shape[:2]
        inputs = self._single_frame_inputs(ANSWERER, feats, qa_texts)
        return self._read_letters(inputs, num_options).reshape(b, t, -1)

    def _read_letters(self, inputs: LLMInputs, num_options: int | None) -> torch.Tensor:
        """Option-letter logits at the family's read step (T5: greedy step 2; decoder-only:
        step 1 after the appended "Option" token, see PromptLayout.for_answer_read)."""
        inputs, step = self.layout.for_answer_read(inputs, self.token_ids.option_prefix)
        with self.serving(ANSWERER):
            read = self.llm.greedy_step_logits(inputs, steps=step)[step - 1]
        return read[:, self.letter_ids(num_options)]

    def answerer_loss(self, feats: torch.Tensor, qa_texts: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
        """Teacher-forced loss of "Option X" from k frames [B, k, P, D] (video layout)."""
        target = self.layout.targets(targets, feats.device)
        with self.serving(ANSWERER):
            return self.llm.teacher_forced(self._video_inputs(feats, qa_texts), target.ids, target.mask).loss

    # -- chains ------------------------------------------------------------------------
    @staticmethod
    def gather_frames(feats: torch.Tensor, indices: torch.Tensor, clips: torch.Tensor | None = None) -> torch.Tensor:
        """Frames ``indices`` [B, k] of features [B, T, ...] -> [B, k, ...].

        With ``clips`` [B], ``feats`` holds distinct clips [U, T, ...] and row b reads clip
        ``clips[b]`` (see :meth:`frame_logits`).
        """
        if clips is not None:
            t = feats.shape[1]
            rows = clips.to(indices.device)[:, None] * t + indices
            return feats.flatten(0, 1).index_select(0, rows.reshape(-1)).reshape(*indices.shape, *feats.shape[2:])
        index = indices.reshape(*indices.shape, *([1] * (feats.dim() - 2))).expand(-1, -1, *feats.shape[2:])
        return torch.gather(feats, 1, index)

    def keyframes(
        self, feats: torch.Tensor, loc_texts: Sequence[str], k: int | None = None, clips: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, FrameLogits]:
        """Forward chain, first half: the localizer's top-k frames [B, k] in time order."""
        scores = self.frame_logits(feats, loc_texts, clips)
        return self.select_keyframes(scores.yes, k or self.config.num_keyframes), scores

    def pseudo_labels(
        self,
        feats: torch.Tensor,
        qa_texts: Sequence[str],
        targets: Sequence[str],
        num_options: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reverse chain: True where the answerer, reading that frame alone, is right [B, T].

        Image layout, teacher-forced on the target "Option X"; the predicted letter is the
        argmax over the option letters at decoder position 1 (spec section 6.3; every
        family returns target-aligned logits, so this is the letter's target position), over the
        question's own ``num_options`` [B] letters when given (mixed option counts).
        """
        b, t = feats.shape[:2]
        inputs = self._single_frame_inputs(ANSWERER, feats, qa_texts)
        target = self.layout.targets(targets, feats.device).repeat(t)
        # only the letter logits at the read position are computed (pseudo-labels need nothing
        # else), in chunks of rows like the localizer's (no gradient flows here)
        chunk = self.config.localizer_chunk_size or self._auto_chunk(
            b * t, visual_tokens=0, text_tokens=inputs.embeds.shape[1], device=feats.device)
        read = []
        with self.serving(ANSWERER):
            for start in range(0, b * t, chunk):
                part = target.rows(start, start + chunk)
                read.append(self.llm.teacher_forced_token_logits(
                    inputs.rows(start, start + chunk), part.ids, part.mask, self.token_ids.letter_index,
                    self.letter_ids()))
        letters = torch.cat(read).reshape(b, t, -1)
        predicted = self.mask_options(letters, num_options).argmax(dim=-1)
        truth = torch.tensor([prompts.answer_index(x) for x in targets], device=feats.device)
        return predicted == truth[:, None]

    def _cached_pseudo_labels(self, samples: dict[str, Any], feats: torch.Tensor) -> torch.Tensor:
        """:meth:`pseudo_labels`, from ``self.pseudo_label_cache`` where it applies (fixed frames,
        frozen answerer in eval mode); identical either way."""
        qa, target, counts = samples["qa_input"], samples["qa_output"], samples.get("num_options")
        compute = lambda rows: self.pseudo_labels(  # noqa: E731
            feats[rows], [qa[i] for i in rows], [target[i] for i in rows], None if counts is None else counts[rows])
        keys_in = samples.get("clip_key")
        if self.pseudo_label_cache is None or keys_in is None or self.config.frozen_role_train_mode:
            return self.pseudo_labels(feats, qa, target, counts)
        if not hasattr(self, "_answerer_fingerprint"):
            self._answerer_fingerprint = ModuleFingerprint(
                [self.roles[ANSWERER], self.llm.module], self.config.to_dict()["llm"])
        answerer = self._answerer_fingerprint() + self._vit_fingerprint()
        n = None if counts is None else torch.as_tensor(counts).tolist()
        keys = [
            PseudoLabelCache.key(FeatureCache.key(ck, samples["video"][i], ""), (qa[i], target[i], n and n[i]), answerer)
            if ck else None
            for i, ck in enumerate(keys_in)
        ]
        return self.pseudo_label_cache.labels(keys, compute)

    @contextlib.contextmanager
    def frozen_role(self, role: str) -> Iterator[None]:
        """Run a role that only feeds the trained one: no grad, eval mode (orig: train mode)."""
        modules = [self.roles[role], self.llm.module]
        modes = [m.training for m in modules]
        with torch.no_grad():
            if not self.config.frozen_role_train_mode:
                for module in modules:
                    module.eval()
            try:
                yield
            finally:
                for module, mode in zip(modules, modes):
                    module.train(mode)

    # -- training: one loss per stage ----------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.stage is Stage.INFER:
            raise RuntimeError("stage 'infer' trains nothing; set model.stage to a training stage")
        return self._STAGE_LOSS[self.stage](self, samples)

    def _loss_pretrain_localizer(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = samples["frame_labels"]
        if (labels < 0).any():
            raise ValueError("pretrain_localizer needs per-frame labels (a moment dataset such as qvh)")
        feats = self.encode_frames(samples["video"], samples.get("clip_key"))
        return {"loss": self.localizer_loss(feats, samples["loc_input"], labels.bool())}

    def _loss_finetune_answerer(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.encode_frames(samples["video"], samples.get("clip_key"))
        with self.frozen_role(self.stage.frozen_role):
            chosen, _ = self.keyframes(feats, samples["loc_input"])
        loss = self.answerer_loss(self.gather_frames(feats, chosen), samples["qa_input"], samples["qa_output"])
        return {"loss": loss}

    def _loss_refine_localizer(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.encode_frames(samples["video"], samples.get("clip_key"))
        with self.frozen_role(self.stage.frozen_role):
            labels = self._cached_pseudo_labels(samples, feats)
        loss = self.localizer_loss(feats, samples["loc_input"], labels)
        return {"loss": loss, "pseudo_yes_rate": labels.float().mean()}

    def _loss_answer_uniform(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.encode_frames(samples["video"], samples.get("clip_key"))
        return {"loss": self.answerer_loss(feats, samples["qa_input"], samples["qa_output"])}

    def _loss_pretrain_backbone(self, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Stage 0: a free-text answer about one frame (image layout), teacher-forced.

        The answerer role only, as BLIP-2's image-to-text pre-training; the checkpoint it
        leaves has BLIP-2's layout and is read later as ``model.pretrained``.
        """
        image = samples["image"]
        if image.dim() != 5 or image.shape[1] != 1:
            raise ValueError(f"pretrain_backbone reads single frames [B, 1, 3, H, W], got {tuple(image.shape)} "
                             "(an image-text dataset such as sevila_image_text)")
        feats = self.encode_frames(image)
        inputs = self._single_frame_inputs(ANSWERER, feats, samples["text_input"])
        target = self.layout.targets(samples["text_output"], feats.device)
        loss = self.llm.teacher_forced(inputs, target.ids, target.mask).loss
        k = self.config.pretrain_video_frames
        if k:  # the same question in the video layout, the frame repeated k times (mean of both)
            video = self._video_inputs(feats.expand(-1, k, *feats.shape[2:]), samples["text_input"])
            loss = (loss + self.llm.teacher_forced(video, target.ids, target.mask).loss) / 2
        return {"loss": loss}

    _STAGE_LOSS: dict[Stage, Callable[["SeViLA", dict[str, Any]], dict[str, torch.Tensor]]] = {
        Stage.PRETRAIN_BACKBONE: _loss_pretrain_backbone,
        Stage.PRETRAIN_LOCALIZER: _loss_pretrain_localizer,
        Stage.FINETUNE_ANSWERER: _loss_finetune_answerer,
        Stage.REFINE_LOCALIZER: _loss_refine_localizer,
        Stage.ANSWER_UNIFORM: _loss_answer_uniform,
    }

    # -- evaluation ----------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, samples: dict[str, Any], mode: str = "chain", num_options: int | None = None) -> list[dict[str, Any]]:
        """One record per question of the batch (see EVAL_MODES).

        Rows with ``video_ok`` False (unreadable video kept for counting) never reach the
        model: their prediction is -1 (unanswered), never a guess.  ``num_options`` is how
        many letters are read (default: the batch's largest ``samples["num_options"]``, else
        ``answer_num``); each row then chooses only among its own ``num_options`` letters.
        """
        if mode not in EVAL_MODES:
            raise ValueError(f"unknown evaluation mode {mode!r}; available: {EVAL_MODES}")
        video = samples["video"]
        ok = samples.get("video_ok")
        ok = torch.ones(video.shape[0], dtype=torch.bool) if ok is None else torch.as_tensor(ok, dtype=torch.bool)
        records: list[dict[str, Any]] = [
            {"question_id": qid, "prediction": -1, "video_ok": bool(flag)}
            for qid, flag in zip(samples["question_id"], ok.tolist())
        ]
        rows = [i for i, flag in enumerate(ok.tolist()) if flag]
        if not rows:
            return records
        pick = torch.tensor(rows, device=video.device)
        take = lambda key: [samples[key][i] for i in rows]  # noqa: E731
        # the questions of one video share its frames: encoded once, read by each question
        feats, clips = self.encode_clips(video.index_select(0, pick), take("clip_key") if "clip_key" in samples else None)
        counts = None
        if samples.get("num_options") is not None:
            counts = torch.as_tensor(take("num_options"), dtype=torch.long)
            num_options = num_options or int(counts.max()) or None
            counts = option_counts(counts, len(self.letter_ids(num_options)))
        outputs = getattr(self, f"_predict_{mode}")(feats, clips, take, num_options, counts)
        for row, out in zip(rows, outputs):
            records[row].update(out)
        return records

    @staticmethod
    def _own_options(logits: torch.Tensor, counts: torch.Tensor | None) -> list[torch.Tensor]:
        """Each row's letter logits cut to its own option count (masked argmax, finite scores)."""
        if counts is None:
            return list(logits)
        return [row[..., : int(n)] for row, n in zip(logits, counts.tolist())]

    def _predict_chain(self, feats, clips, take, num_options, counts) -> list[dict[str, Any]]:
        chosen, scores = self.keyframes(feats, take("loc_input"), clips=clips)
        visual = self.frame_tokens(ANSWERER, feats, chosen, clips)  # = answer_logits on the gathered frames
        logits = self._read_letters(self.layout.video(visual, take("qa_input")), num_options)
        return [
            {
                "prediction": int(row.argmax()),
                "option_scores": row.tolist(),
                "keyframes": idx.tolist(),
                "keyframe_scores": yes[idx].tolist(),
                "frame_scores": yes.tolist(),
            }
            for row, idx, yes in zip(self._own_options(logits, counts), chosen, scores.yes)
        ]

    def _predict_chain_single(self, feats, clips, take, num_options, counts) -> list[dict[str, Any]]:
        chosen, scores = self.keyframes(feats, take("loc_input"), k=1, clips=clips)
        picked = self.gather_frames(feats, chosen, clips)
        logits = self.answer_logits_per_frame(picked, take("qa_input"), num_options)[:, 0]
        return [
            {"prediction": int(row.argmax()), "option_scores": row.tolist(), "keyframes": idx.tolist(),
             "frame_scores": yes.tolist()}
            for row, idx, yes in zip(self._own_options(logits, counts), chosen, scores.yes)
        ]

    def _predict_uniform(self, feats, clips, take, num_options, counts) -> list[dict[str, Any]]:
        feats = feats.index_select(0, clips)
        logits = self.answer_logits(feats, take("qa_input"), num_options)
        frames = list(range(feats.shape[1]))
        return [
            {"prediction": int(row.argmax()), "option_scores": row.tolist(), "keyframes": frames}
            for row in self._own_options(logits, counts)
        ]

    def _predict_per_frame(self, feats, clips, take, num_options, counts) -> list[dict[str, Any]]:
        feats = feats.index_select(0, clips)
        logits = self.answer_logits_per_frame(feats, take("qa_input"), num_options)  # [B, T, A]
        out = []
        for row, answer in zip(self._own_options(logits, counts), take("answer_idx")):
            votes = row.argmax(dim=-1)  # [T], each frame's answer among the row's own options
            tally = torch.bincount(votes, minlength=row.shape[-1])
            out.append(
                {
                    "prediction": int(tally.argmax()),  # majority; ties -> lowest option index
                    "frame_predictions": votes.tolist(),
                    "oracle_correct": bool((votes == int(answer)).any()),
                }
            )
        return out

    def _predict_localize(self, feats, clips, take, num_options, counts) -> list[dict[str, Any]]:
        scores = self.frame_logits(feats, take("loc_input"), clips)
        return [{"yes_logits": yes.tolist(), "no_logits": no.tolist()} for yes, no in zip(scores.yes, scores.no)]

    # -- public API (no config file needed) ------------------------------------------------
    def _prepare_video(self, video: torch.Tensor | str | os.PathLike, num_frames: int) -> torch.Tensor:
        """A video file, uint8 frames or processed frames [T, 3, H, W] -> [1, T, 3, H, W]."""
        from lavis_sevila.processors.video_processors import SevilaVideoEvalProcessor

        size = self.config.vision.img_size
        if isinstance(video, (str, os.PathLike)):
            from lavis_sevila.video import read_clip

            video = read_clip(video, num_frames, mode="uniform", image_size=size).frames
        if video.dim() != 4:
            raise ValueError(f"expected frames [T, 3, H, W], got shape {tuple(video.shape)}")
        if video.dtype == torch.uint8:
            video = SevilaVideoEvalProcessor(image_size=size)(video)
        return video.to(self.device, torch.float32).unsqueeze(0)

    @torch.no_grad()
    def score_frames(
        self, video: torch.Tensor | str | os.PathLike, question: str, options: Sequence[str], num_frames: int = 32
    ) -> torch.Tensor:
        """Localizer "yes" logit of every frame [T] for one multiple-choice question.

        ``video``: a file (``num_frames`` sampled uniformly), uint8 frames or processed frames.
        """
        prompt = prompts.multiple_choice(question, options, None)
        feats = self.encode_frames(self._prepare_video(video, num_frames))
        return self.frame_logits(feats, [prompt.loc_input]).yes[0]

    @torch.no_grad()
    def answer(
        self,
        video: torch.Tensor | str | os.PathLike,
        question: str,
        options: Sequence[str],
        num_keyframes: int | None = None,
        num_frames: int = 32,
    ) -> Answer:
        """Forward chain for one question: keyframes, then the answer over ``options``."""
        prompt = prompts.multiple_choice(question, options, None)
        feats = self.encode_frames(self._prepare_video(video, num_frames))
        chosen, scores = self.keyframes(feats, [prompt.loc_input], k=num_keyframes)
        logits = self.answer_logits(self.gather_frames(feats, chosen), [prompt.qa_input], len(options))[0]
        return Answer(
            index=int(logits.argmax()),
            probabilities=logits.softmax(dim=-1).tolist(),
            keyframes=chosen[0].tolist(),
            frame_scores=scores.yes[0].tolist(),
        )
