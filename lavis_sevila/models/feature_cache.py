"""ViT features computed once per (clip, ViT): an LRU cache in memory, optionally on disk.

Why: SeViLA is ViT-bound once its decoding is reduced to the logits it reads, and a
NExT-QA video carries about ten questions, each of which used to re-run the ViT on the
same frames.  A clip's features depend only on its pixels and on the ViT, so the key is

- the clip key the datasets put in every batch (``clip_key``: video id, frame indices,
  frame processor; see :func:`lavis_sevila.data.samples.clip_key`),
- a digest of the pixels actually fed (catches another image size, another processor's
  normalisation, or a re-encoded video file under the same name),
- a fingerprint of the ViT: its config and every parameter and buffer (recomputed when a
  weight changes in place, e.g. an optimizer step on a ViT that trains).

A clip without a key (``""``: random frame sampling or random crops in training, or an
unreadable video's zero placeholder) is never cached; neither is a ViT that trains or
runs in train mode (dropout): its features are not a function of the key.

On disk (``model.feature_cache_dir``, e.g. beside the shards) one ``<key>.safetensors``
per clip holds a single float32 tensor ``features`` [T, P, D]; files are written
atomically and checked (name, dtype, shape) when read back.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

KEY_VERSION = "sevila-vit-features-v1"


def tensor_digest(tensor: torch.Tensor) -> str:
    """blake2b of a tensor's dtype, shape and bytes."""
    data = tensor.detach().contiguous().cpu()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


class ModuleFingerprint:
    """A digest of a module's config and weights, recomputed only when a weight changed.

    Tensors count as unchanged while their storage and in-place version counter are the
    same (``load_state_dict`` and optimizer steps bump the counter).
    """

    def __init__(self, module: nn.Module | Sequence[nn.Module | torch.Tensor], config: Any = None) -> None:
        self.parts = [module] if isinstance(module, (nn.Module, torch.Tensor)) else list(module)
        self.config = json.dumps(config, sort_keys=True, default=str)
        self._state: tuple | None = None
        self._digest = ""

    def _tensors(self) -> list[tuple[str, torch.Tensor]]:
        out: list[tuple[str, torch.Tensor]] = []
        for i, part in enumerate(self.parts):
            named = [("", part)] if isinstance(part, torch.Tensor) else [*part.named_parameters(), *part.named_buffers()]
            out.extend((f"{i}.{name}", tensor) for name, tensor in named)
        return out

    def __call__(self) -> str:
        state = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in self._tensors())
        if state != self._state:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.config.encode())
            for name, tensor in self._tensors():
                h.update(name.encode())
                h.update(tensor_digest(tensor).encode())
            self._state, self._digest = state, h.hexdigest()
        return self._digest


class FeatureCache:
    """LRU of per-clip features [T, P, D] bounded in bytes, with an optional disk layer."""

    def __init__(self, max_bytes: int, directory: str | os.PathLike | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"feature cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.disk_hits = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(clip_key: str, pixels: torch.Tensor, vit_fingerprint: str) -> str:
        h = hashlib.blake2b(digest_size=20)
        for part in (KEY_VERSION, clip_key, tensor_digest(pixels), vit_fingerprint):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def get(self, key: str, shape: Sequence[int] | None = None) -> torch.Tensor | None:
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        found = self._read(key, shape)
        if found is None:
            self.misses += 1
            return None
        self.disk_hits += 1
        self._remember(key, found)
        return found

    def put(self, key: str, features: torch.Tensor) -> None:
        # a normal tensor even under inference_mode (evaluation), so a training step that
        # reads it later can save it for backward
        with torch.inference_mode(False):
            features = features.detach().to("cpu", torch.float32).contiguous().clone()
        self._remember(key, features)
        self._write(key, features)

    def _remember(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        if key in self._items:
            self.bytes -= self._items.pop(key).numel() * 4
        self._items[key] = features
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.safetensors"

    def _read(self, key: str, shape: Sequence[int] | None) -> torch.Tensor | None:
        if self.directory is None or not self._path(key).exists():
            return None
        from safetensors.torch import load_file

        path = self._path(key)
        state = load_file(str(path))
        features = state.get("features")
        if set(state) != {"features"} or features is None or features.dtype != torch.float32 or features.dim() != 3:
            raise ValueError(f"feature cache file {path} is not one float32 [T, P, D] tensor 'features'; delete it")
        if shape is not None and tuple(features.shape[:1]) != tuple(shape[:1]):
            raise ValueError(f"feature cache file {path} holds {features.shape[0]} frames, expected {shape[0]}; delete it")
        return features

    def _write(self, key: str, features: torch.Tensor) -> None:
        if self.directory is None:
            return
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".partial")
        os.close(handle)
        try:
            save_file({"features": features}, partial)
            os.chmod(partial, 0o644)
            os.replace(partial, self._path(key))
        finally:
            Path(partial).unlink(missing_ok=True)

    def stats(self) -> dict[str, int]:
        return {"clips": len(self), "bytes": self.bytes, "hits": self.hits, "disk_hits": self.disk_hits,
                "misses": self.misses}


def encode_unique(
    encode: Callable[[torch.Tensor], torch.Tensor],
    video: torch.Tensor,
    clip_keys: Sequence[str] | None,
    cache: FeatureCache | None,
    fingerprint: Callable[[], str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the batch's distinct clips [U, T, P, D] and each row's clip [B].

    Rows with the same non-empty clip key (the questions of one video) are encoded once;
    their pixels are checked equal (a key shared by different pixels is an error, never a
    silent reuse).  Keyed clips are looked up in / stored into ``cache`` when given.
    Rows without a key are each their own clip and are never cached.
    """
    b = video.shape[0]
    if clip_keys is None:
        return encode(video), torch.arange(b, device=video.device)
    if len(clip_keys) != b:
        raise ValueError(f"{len(clip_keys)} clip keys for a batch of {b} videos")
    owner: dict[str, int] = {}  # clip key -> index of its distinct clip
    rows: list[int] = []  # distinct clip -> first batch row
    inverse: list[int] = []
    for row, ck in enumerate(clip_keys):
        if ck and ck in owner:
            first = rows[owner[ck]]
            if not torch.equal(video[row], video[first]):
                raise ValueError(f"clip key {ck!r} names two different pixel tensors in one batch "
                                 "(rows {first} and {row}): the clip key must include the frame processor")
            inverse.append(owner[ck])
            continue
        if ck:
            owner[ck] = len(rows)
        inverse.append(len(rows))
        rows.append(row)
    vit = fingerprint() if cache is not None else ""
    keys = [FeatureCache.key(clip_keys[r], video[r], vit) if (cache is not None and clip_keys[r]) else None
            for r in rows]
    found: list[torch.Tensor | None] = [cache.get(k, video.shape[1:2]) if k else None for k in keys]
    todo = [i for i, hit in enumerate(found) if hit is None]
    if todo:
        picked = [rows[i] for i in todo]
        computed = encode(video if picked == list(range(b)) else video[picked])
        for i, feats in zip(todo, computed):
            found[i] = feats
            if keys[i]:
                cache.put(keys[i], feats)
    feats = computed if len(todo) == len(rows) else torch.stack([f.to(video.device) for f in found])
    return feats, torch.tensor(inverse, dtype=torch.long, device=video.device)


class PseudoLabelCache:
    """A frozen answerer's pseudo-labels [T] per (clip, question, answerer), computed once.

    For stage 3 with fixed frames (shards, eval processor) the frozen answerer labels the
    same frames of the same question the same way every epoch, so its pass over every frame
    is needed once per run, not once per epoch (``model.pseudo_label_cache``, off by
    default).  The key holds the feature-cache key of the clip (clip key, pixels, ViT), the
    question's texts and option count, and a fingerprint of the answerer and the LLM.
    """

    def __init__(self) -> None:
        self._items: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(clip_feature_key: str, question: Sequence[Any], answerer_fingerprint: str) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(json.dumps([clip_feature_key, [str(q) for q in question], answerer_fingerprint]).encode())
        return h.hexdigest()

    def labels(self, keys: Sequence[str | None], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Rows [B, T]: cached where the key is known, else ``compute(rows)`` (and stored)."""
        missing = [i for i, key in enumerate(keys) if key is None or key not in self._items]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = dict(zip(missing, compute(missing))) if missing else {}
        for i, row in fresh.items():
            if keys[i] is not None:
                self._items[keys[i]] = row.detach().cpu().clone()
        device = next(iter(fresh.values())).device if fresh else torch.device("cpu")
        return torch.stack([fresh[i] if i in fresh else self._items[keys[i]].to(device) for i in range(len(keys))])
