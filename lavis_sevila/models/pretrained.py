"""Where weights come from: one registry of known sources, a verified download cache.

A weight option (``model.vision.weights``, ``model.pretrained``, ``model.finetuned``)
takes the name of a source listed in :data:`SOURCES` (``eva_vit_g``), a URL, or a local
file.  A name or a URL is downloaded once into ``$LAVIS_SEVILA_CACHE/weights``:

* resumable -- bytes go to ``<file>.part``; a later attempt asks the server for the rest
  (HTTP ``Range``) and starts over when the server ignores the request;
* verified -- when the source's SHA-256 is known, the finished download is hashed and a
  mismatch is an error naming the file and both hashes (the bad download is deleted);
* atomic -- the ``.part`` file is renamed into place only when complete and verified, so
  a cached file is always a whole one.

Hashes nobody here has computed from the published file are ``None`` ("unknown"): they
are never guessed.  Hub models (the LLMs, their tokenizers) are listed too, for ``python
-m lavis_sevila.models list``, but transformers' ``from_pretrained`` fetches and caches
them.  Nothing here unpickles: reading a file is ``checkpoint.load_state_file``'s job.
This module imports neither torch nor LAVIS.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

LAVIS_STORAGE = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"
CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$LAVIS_SEVILA_CACHE`` or ``~/.cache/lavis_sevila``: downloads, built tokenizers."""
    root = os.environ.get("LAVIS_SEVILA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lavis_sevila")
    return Path(root)


@dataclass(frozen=True)
class WeightSource:
    """One published set of weights: a file behind a URL, or a model on the Hugging Face hub."""

    name: str
    kind: str  # "file" (downloaded here) | "hub" (transformers' from_pretrained)
    location: Optional[str]  # file: download URL (None: no direct link, download by hand); hub: repo id
    sha256: Optional[str]  # hex digest of the file; None = unknown, not checked
    size: Optional[int]  # bytes; None = unknown
    licence: str  # a note on the terms, and where they are stated
    description: str
    homepage: str = ""

    @property
    def filename(self) -> str:
        return os.path.basename(urlparse(self.location).path) if self.kind == "file" and self.location else self.name


SOURCES: dict[str, WeightSource] = {
    source.name: source
    for source in (
        WeightSource(
            "eva_vit_g", "file", f"{LAVIS_STORAGE}/eva_vit_g.pth", None, None,
            "EVA-CLIP ViT-g weights by BAAI, as hosted by Salesforce for LAVIS; terms: github.com/baaivision/EVA",
            "EVA ViT-g/14 image encoder (model.vision.weights); BLIP-2 drops its last block",
            "https://github.com/baaivision/EVA",
        ),
        WeightSource(
            "blip2_flant5xl", "file", f"{LAVIS_STORAGE}/blip2_pretrained_flant5xl.pth", None, None,
            "Salesforce LAVIS (BSD-3-Clause, github.com/salesforce/LAVIS)",
            "BLIP-2 Q-Former + query tokens + t5_proj for Flan-T5-XL (model.pretrained of pretrain_flant5xl)",
            "https://github.com/salesforce/LAVIS/tree/main/projects/blip2",
        ),
        WeightSource(
            "blip2_opt2.7b", "file", f"{LAVIS_STORAGE}/blip2_pretrained_opt2.7b.pth", None, None,
            "Salesforce LAVIS (BSD-3-Clause, github.com/salesforce/LAVIS)",
            "BLIP-2 Q-Former + query tokens + opt_proj for OPT-2.7b (decoder-only backbone, roadmap)",
            "https://github.com/salesforce/LAVIS/tree/main/projects/blip2",
        ),
        WeightSource(
            "minigpt4_projection", "file", None, None, None,
            "MiniGPT-4 authors (Vision-CAIR); terms: github.com/Vision-CAIR/MiniGPT-4",
            "pretrained_minigpt4.pth: MiniGPT-4's llama_proj into Vicuna (roadmap). The authors link it "
            "from their README (Google Drive), not by a direct URL: download it there and give the path",
            "https://github.com/Vision-CAIR/MiniGPT-4",
        ),
        WeightSource(
            "sevila_pretrained", "file", "https://huggingface.co/Shoubin/SeViLA/resolve/main/sevila_pretrained.pth",
            None, None,
            "SeViLA authors (Yu et al., 2023); terms: github.com/Yui010206/SeViLA",
            "the authors' SeViLA checkpoint: localizer pre-trained on QVHighlights + zero-shot answerer "
            "(model.finetuned)",
            "https://github.com/Yui010206/SeViLA",
        ),
        WeightSource(
            "flan_t5_xl", "hub", "google/flan-t5-xl", None, None,
            "Apache-2.0 (model card on the Hugging Face hub)",
            "Flan-T5-XL, the LLM and tokenizer of pretrain_flant5xl (model.llm.name_or_path, model.tokenizer)",
            "https://huggingface.co/google/flan-t5-xl",
        ),
        WeightSource(
            "opt_2.7b", "hub", "facebook/opt-2.7b", None, None,
            "Meta's OPT licence, non-commercial research use (model card on the hub)",
            "OPT-2.7b, the LLM of BLIP-2 OPT (roadmap)",
            "https://huggingface.co/facebook/opt-2.7b",
        ),
        WeightSource(
            "vicuna_7b_delta_v0", "hub", "lmsys/vicuna-7b-delta-v0", None, None,
            "delta weights over LLaMA-7B: LLaMA's non-commercial licence applies (model card on the hub)",
            "Vicuna-7B v0 as a delta; MiniGPT-4's LLM after FastChat's apply_delta onto LLaMA-7B -- give the "
            "merged local directory as model.llm.name_or_path (roadmap)",
            "https://huggingface.co/lmsys/vicuna-7b-delta-v0",
        ),
    )
}


class WeightHashMismatch(ValueError):
    """A downloaded file is not the published one (or the registry's hash is wrong)."""


def is_url(source: str) -> bool:
    return urlparse(str(source)).scheme in ("http", "https", "file")


def source_for(location: str) -> Optional[WeightSource]:
    """The registered source with this name or download URL, if any."""
    if location in SOURCES:
        return SOURCES[location]
    return next((s for s in SOURCES.values() if s.kind == "file" and s.location == location), None)


def cached_path(url: str) -> Path:
    """Where the download of ``url`` lives in the cache (present or not)."""
    name = os.path.basename(urlparse(url).path) or "download"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return cache_dir() / "weights" / f"{digest}-{name}"


def resolve_file(source: str | os.PathLike) -> Path:
    """A local path for ``source``: a registered name or a URL (downloaded once), or a file.

    ``hf:...`` / ``hf-shared:...`` (models/convert_hf.py) come back as an ``HFSource``,
    which ``checkpoint.load_state_file`` converts.
    """
    from lavis_sevila.models.convert_hf import HFSource, is_hf_source

    if is_hf_source(source):
        return HFSource.parse(source)
    text = str(source)
    known = source_for(text)
    if known is not None and known.kind == "hub":
        raise ValueError(f"{text!r} is a Hugging Face hub model ({known.location}), not a weights file; "
                         f"use it as model.llm.name_or_path / model.tokenizer")
    if known is not None and known.location is None:
        raise FileNotFoundError(f"{known.name} has no direct download: {known.description}. See {known.homepage}")
    if known is not None or is_url(text):
        url = known.location if known is not None else text
        target = cached_path(url)
        if not target.exists():
            try:
                download(url, target, sha256=known.sha256 if known else None)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # many kinds of network error
                raise FileNotFoundError(
                    f"could not download {url}: {error}. Run again to resume, or download it elsewhere and "
                    "give the local path instead."
                ) from error
        return target
    path = Path(text).expanduser()
    if not path.is_file():
        names = ", ".join(n for n, s in SOURCES.items() if s.kind == "file")
        raise FileNotFoundError(f"weights file not found: {path} (registered names: {names})")
    return path


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    target: str | os.PathLike,
    sha256: Optional[str] = None,
    on_progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> Path:
    """Download ``url`` to ``target`` through ``target.part``: resumed, verified, renamed at the end."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    digest = hashlib.sha256()
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not have:  # 416: nothing left after what .part holds; start over
            raise
        partial.unlink()
        return download(url, target, sha256, on_progress)
    with response:
        resumed = have > 0 and getattr(response, "status", 200) == 206
        answered = response.headers.get("Content-Range", f"bytes {have}-")
        if resumed and not answered.startswith(f"bytes {have}-"):
            partial.unlink()  # not the range asked for: appending it would corrupt the file
            raise OSError(f"{url} answered {answered!r} to a request from byte {have}; run again to start over")
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length and length.isdigit() else None
        if resumed:
            logger.info("resuming %s at byte %d", url, have)
            with open(partial, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(block)
        else:
            have = 0  # a fresh download, or a server (or file://) that ignored the Range request
        with open(partial, "ab" if resumed else "wb") as out:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                have += len(block)
                if on_progress is not None:
                    on_progress(have, total)
            out.flush()
            os.fsync(out.fileno())
    if total is not None and have != total:
        raise OSError(f"download of {url} stopped at {have} of {total} bytes; run again to resume ({partial})")
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256.lower():
        partial.unlink()
        raise WeightHashMismatch(
            f"{url} (downloaded to {target}) has SHA-256 {actual}, expected {sha256.lower()}; "
            "the bad download was deleted"
        )
    os.replace(partial, target)
    return target


def is_cached(source: WeightSource) -> Optional[str]:
    """The local path holding ``source``, or None."""
    if source.kind == "file":
        if source.location is None:
            return None
        path = cached_path(source.location)
        return str(path) if path.exists() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    found = try_to_load_from_cache(source.location, "config.json")
    return os.path.dirname(found) if isinstance(found, str) else None

