"""Reading checkpoints as untrusted files, and loading them loudly.

* Files are read with ``torch.load(weights_only=True)``: tensors and plain containers
  only, never arbitrary pickled objects.
* Files use the authors' flat layout; a model with a ``checkpoint_layout`` (SeViLA:
  ``convert.CheckpointLayout``) is translated to and from it here, when loading and
  saving, and nowhere else.  Keys are grouped by their top-level component in that
  layout (``Qformer_loc``, ``t5_proj``, ...).
  A checkpoint may supply whole groups; a group it supplies must be complete, every
  tensor must have the model's shape, and a key the model does not have is an error
  unless a pattern in ``allow_unexpected`` names it.  The authors' loader logs missing
  keys at INFO level and ignores the rest (their issue #9).
* Training checkpoints hold only the trained parameters, plus a manifest saying what
  they are (stage, keys, shapes, dtypes, versions).
"""
from __future__ import annotations

import fnmatch
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from lavis_sevila.diskspace import NoSpaceLeft, explain_full_disk

logger = logging.getLogger(__name__)

FORMAT = "lavis_sevila.checkpoint/1"


class CheckpointError(ValueError):
    pass


def group_of(key: str) -> str:
    """A checkpoint key's top-level group (``Qformer_loc``, ``t5_proj``, ``visual_encoder``, ...)."""
    return key.split(".", 1)[0]


def file_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state under checkpoint names (the authors' layout for SeViLA)."""
    layout = getattr(model, "checkpoint_layout", None)
    state = model.state_dict()
    return layout.to_file(state) if layout is not None else state


def file_name_of(model: nn.Module):
    """Model key -> checkpoint key (the identity for a model without a layout)."""
    layout = getattr(model, "checkpoint_layout", None)
    return layout.file_key if layout is not None else (lambda key: key)


def _load_weights_only(path: str | os.PathLike) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refusals come as several exception types
        raise CheckpointError(f"{path}: not a weights-only checkpoint ({error})") from error


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside ``path`` (``{"model": sd}``, ``{"module": sd}`` or a bare sd)."""
    from lavis_sevila.models.convert_hf import HFSource

    if isinstance(path, HFSource):  # an HF BLIP-2 (model.pretrained: hf:...), converted key by key
        return path.load()
    return state_dict_of(_load_weights_only(path), source=str(path))


def state_dict_of(payload: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, Mapping):
        for key in ("model", "module", "state_dict"):
            if key in payload and isinstance(payload[key], Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{source}: expected a state dict, found {type(payload).__name__}")
    bad = [k for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} entries are not tensors, e.g. {bad[:3]}")
    return dict(payload)


@dataclass
class LoadReport:
    source: str
    loaded: dict[str, int] = field(default_factory=dict)  # group -> tensors loaded
    absent: list[str] = field(default_factory=list)  # model groups this file does not supply
    ignored: dict[str, list[str]] = field(default_factory=dict)  # allowed unexpected keys per pattern
    cast: list[str] = field(default_factory=list)  # keys whose dtype was converted

    def summary(self) -> str:
        parts = [f"loaded {self.source}: " + ", ".join(f"{g} ({n})" for g, n in sorted(self.loaded.items()))]
        if self.absent:
            parts.append("not in this file: " + ", ".join(self.absent))
        for pattern, keys in self.ignored.items():
            parts.append(f"ignored {len(keys)} key(s) matching {pattern!r}")
        if self.cast:
            parts.append(f"dtype converted for {len(self.cast)} tensor(s), e.g. {self.cast[:3]}")
        return "; ".join(parts)


def load_into(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    allow_unexpected: Iterable[str] = (),
) -> LoadReport:
    """Copy ``state`` into ``model`` after checking keys, groups, shapes and dtypes.

    ``state`` is in the checkpoint layout; a key in the model's own naming (a saved
    ``model.state_dict()``) is read as its checkpoint name.  Every check and message uses
    checkpoint names.
    """
    own = file_state(model)
    name_of = file_name_of(model)
    normalised = {name_of(key): value for key, value in state.items()}
    if len(normalised) != len(state):
        raise CheckpointError(f"{source}: holds some tensors twice, under the model's and the checkpoint's names")
    state = normalised
    patterns = list(allow_unexpected)
    report = LoadReport(source=source)
    unexpected: list[str] = []
    accepted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in own:
            accepted[key] = value
            continue
        pattern = next((p for p in patterns if fnmatch.fnmatchcase(key, p)), None)
        if pattern is None:
            unexpected.append(key)
        else:
            report.ignored.setdefault(pattern, []).append(key)
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} key(s) the model does not have: {_by_group(unexpected)} "
            "(set model.allow_unexpected to patterns of keys you mean to drop)"
        )
    if not accepted:  # {} or {"model": {}}: loading it would change nothing, and say so quietly
        ignored = sum(len(keys) for keys in report.ignored.values())
        held = "no tensors" if not state else f"{len(state)} tensor(s), all dropped by model.allow_unexpected ({ignored})"
        raise CheckpointError(f"{source}: holds {held}: no weights for this model; is it the right file?")

    own_groups: dict[str, set[str]] = defaultdict(set)
    for key in own:
        own_groups[group_of(key)].add(key)
    given_groups: dict[str, set[str]] = defaultdict(set)
    for key in accepted:
        given_groups[group_of(key)].add(key)
    incomplete = {g: sorted(own_groups[g] - keys) for g, keys in given_groups.items() if own_groups[g] - keys}
    if incomplete:
        detail = "; ".join(f"{g}: {len(m)} missing, e.g. {m[:3]}" for g, m in incomplete.items())
        raise CheckpointError(f"{source}: incomplete group(s): {detail}")

    mismatched = [
        f"{k}: {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in accepted.items() if v.shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(f"{source}: shape mismatch: " + "; ".join(mismatched[:10]))
    for key, value in accepted.items():
        target = own[key].dtype
        if value.dtype == target:
            continue
        if not (value.is_floating_point() and target.is_floating_point):
            raise CheckpointError(f"{source}: {key} has dtype {value.dtype}, the model expects {target}")
        report.cast.append(key)

    layout = getattr(model, "checkpoint_layout", None)
    result = model.load_state_dict(layout.from_file(accepted) if layout is not None else accepted, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # filtered above
    report.loaded = {g: len(keys) for g, keys in sorted(given_groups.items())}
    report.absent = sorted(set(own_groups) - set(given_groups))
    logger.info(report.summary())
    return report


def _by_group(keys: list[str]) -> str:
    groups: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        groups[group_of(key)].append(key)
    return "; ".join(f"{g} ({len(k)}, e.g. {k[:2]})" for g, k in sorted(groups.items()))


# -- training checkpoints ---------------------------------------------------------------
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full state (parameters and buffers) of every group that has a trained parameter.

    Whole groups, so the file loads under the group-completeness rule above, here and in
    the authors' code.
    """
    name_of = file_name_of(model)
    groups = {group_of(name_of(name)) for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in file_state(model).items() if group_of(k) in groups}


def manifest_for(state: Mapping[str, torch.Tensor], **info: Any) -> dict[str, Any]:
    """Plain-data description of a checkpoint (loadable with weights_only=True)."""
    from lavis_sevila import __version__

    return {
        "format": FORMAT,
        "lavis_sevila": __version__,
        "torch": str(torch.__version__),
        "groups": sorted({group_of(k) for k in state}),
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in state.items()},
        **info,
    }


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, info: Mapping[str, Any] | None = None, **extra: Any
) -> Path:
    """Write the trained groups, a manifest (with ``info``: stage, epoch, ...) and ``extra``.

    ``extra`` is plain data stored beside them (optimizer state, RNG states); everything
    must load with ``weights_only=True``.  Written to a temporary name and renamed, so a
    run killed while saving never leaves a half-written checkpoint behind.
    """
    state = trainable_state(model)
    info = dict(info or {})
    notes = getattr(model, "checkpoint_notes", None)
    if notes is not None:
        info.update(notes())  # e.g. "lora": what the adapter file holds and lacks
    payload = {"model": state, "manifest": manifest_for(state, **info), **extra}
    return atomic_save(payload, path)


def atomic_save(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a half-written file under ``path``.

    Written to a temporary name in the same folder, flushed to disk, then renamed over
    ``path`` (a rename is atomic), so a reader finds the old file or the new one, whole.
    Written through a Python file, so a full disk is an ``OSError`` naming the path (not
    the C++ writer's bare "basic_ios::clear").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.part{os.getpid()}")
    try:
        with explain_full_disk(path), open(partial, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except NoSpaceLeft:
        partial.unlink(missing_ok=True)
        raise
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OSError(error.errno, f"{error.strerror or error} while writing checkpoint {path}") from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Our training checkpoint, with its manifest checked against its tensors."""
    payload = _load_weights_only(path)
    if not isinstance(payload, dict) or "manifest" not in payload:
        raise CheckpointError(f"{path}: no manifest; not a lavis_sevila training checkpoint")
    state = state_dict_of(payload, source=str(path))
    described = payload["manifest"].get("tensors", {})
    if set(described) != set(state):
        raise CheckpointError(f"{path}: manifest and tensors disagree on keys")
    for key, value in state.items():
        if list(value.shape) != described[key]["shape"] or str(value.dtype).replace("torch.", "") != described[key]["dtype"]:
            raise CheckpointError(f"{path}: {key} does not match its manifest entry")
    return payload
