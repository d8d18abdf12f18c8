"""``python -m lavis_sevila.models list``: SeViLA's model types and every known weight source.

For each model type: its config file and the weight sources it names; for each source:
where it comes from, its SHA-256 ("unknown" when nobody has published or verified one),
its size, its licence note, and whether (and where) it is cached on this machine.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from lavis_sevila.models.pretrained import SOURCES, cache_dir, is_cached


def _size(size: Optional[int]) -> str:
    return "unknown" if size is None else f"{size / 2**20:.1f} MiB"


def model_types() -> list[tuple[str, str, list[str]]]:
    """(model type, config file, weight options it sets) for each registered SeViLA type."""
    import warnings

    from omegaconf import OmegaConf

    with warnings.catch_warnings():  # LAVIS's dependencies warn about deprecations at import
        warnings.simplefilter("ignore", FutureWarning)
        from lavis_sevila.models.sevila import SeViLA  # the registered list (imports LAVIS)

    rows = []
    for model_type in sorted(SeViLA.PRETRAINED_MODEL_CONFIG_DICT):
        path = SeViLA.default_config_path(model_type)
        model = OmegaConf.to_container(OmegaConf.load(path).model)  # "???" (to be set) stays a string
        pretrained = model.get("pretrained")  # one source or a list (MiniGPT-4: BLIP-2 then its projection)
        weights = [
            model.get("vision", {}).get("weights"),
            *(pretrained if isinstance(pretrained, list) else [pretrained]),
            *(model.get("finetuned") or []),
            model.get("llm", {}).get("name_or_path"),
            model.get("tokenizer"),
        ]
        rows.append((model_type, path, [str(w) for w in dict.fromkeys(weights) if w]))
    return rows


def list_all(out=sys.stdout, with_models: bool = True) -> None:
    if with_models:
        print("model types (load_model_and_preprocess('sevila', TYPE) / SeViLA.from_model_type(TYPE)):", file=out)
        for model_type, path, weights in model_types():
            print(f"  {model_type:20s} {path}", file=out)
            print(f"  {'':20s} uses:    {', '.join(weights) if weights else 'nothing (random init)'}", file=out)
        print(file=out)
    print(f"weight sources (cache: {cache_dir() / 'weights'}; hub models: the Hugging Face cache):", file=out)
    for source in SOURCES.values():
        cached = is_cached(source)
        print(f"  {source.name}  [{source.kind}]", file=out)
        print(f"      from:    {source.location or 'no direct download -- ' + source.homepage}", file=out)
        if source.kind == "hub":
            print("      sha256:  n/a (a hub repository: transformers fetches and caches its files)", file=out)
        else:
            print(f"      sha256:  {source.sha256 or 'unknown'}   size: {_size(source.size)}", file=out)
        print(f"      licence: {source.licence}", file=out)
        print(f"      what:    {source.description}", file=out)
        print(f"      cached:  {cached or 'no'}", file=out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lavis_sevila.models", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="model types and weight sources, with what is cached")
    listing.add_argument("--sources-only", action="store_true", help="skip the model types (no LAVIS import)")
    args = parser.parse_args(argv)
    if args.command == "list":
        list_all(with_models=not args.sources_only)


if __name__ == "__main__":
    main()
