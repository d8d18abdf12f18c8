"""Where weights come from: a local file, or a URL downloaded once into our cache.

Hub models (T5 and its tokenizer) are resolved by transformers' ``from_pretrained``,
which takes a hub name or a local directory.  Nothing here unpickles: reading a file is
``checkpoint.load_state_file``'s job.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

from lavis_sevila.models.tokenizer import cache_dir


def is_url(source: str) -> bool:
    return urlparse(str(source)).scheme in ("http", "https", "file")


def resolve_file(source: str | os.PathLike) -> Path:
    """A local path for ``source``: the file itself, or a cached download of the URL.

    ``hf:...`` / ``hf-shared:...`` (models/convert_hf.py) come back as an ``HFSource``.
    """
    from lavis_sevila.models.convert_hf import HFSource, is_hf_source

    if is_hf_source(source):  # an HF BLIP-2: checkpoint.load_state_file converts it
        return HFSource.parse(source)
    source = str(source)
    if is_url(source):
        name = os.path.basename(urlparse(source).path) or "download"
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        target = cache_dir() / "weights" / f"{digest}-{name}"
        if not target.exists():
            import torch.hub

            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            try:
                torch.hub.download_url_to_file(source, str(partial), progress=False)
            except Exception as error:  # network errors come in many types
                raise FileNotFoundError(
                    f"could not download {source}: {error}. Download it elsewhere and give the local path instead."
                ) from error
            os.replace(partial, target)
        return target
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path
