"""Typed, checked ``datasets.<name>`` configuration of the SeViLA dataset builders.

LAVIS hands a builder its merged dataset config (the builder's ``defaults.yaml`` plus the
project file plus ``--options``) and reads whatever keys it wants; a misspelt key
(``build_info.n_frm.eval=4``, ``videos.storge=/x``) would simply add an unread key and the
run would go on with the defaults.  Here every key is parsed once into these dataclasses
at start-up, and an unknown key is an error that names it and lists the known ones, in
the style of ``model.*`` (``lavis_sevila.models.config``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from lavis_sevila.data.samples import ON_UNREADABLE

SPLITS = ("train", "val", "test")
BACKENDS = ("auto", "decord", "pyav")


def check_keys(raw: Any, known: set[str] | tuple[str, ...], prefix: str) -> dict[str, Any]:
    """``raw`` as a dict; raises ValueError naming every unknown key and listing the known ones."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{prefix} must be a mapping of keys, got {type(raw).__name__} {raw!r}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(prefix + '.' + str(k) for k in unknown)}; known: {sorted(known)}")
    return dict(raw)


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class VideosConfig:
    """Where the frames are: ``storage / pattern.format(video=...)`` (see FrameSource)."""

    storage: Optional[str] = None
    pattern: str = "{video}.mp4"
    fps: Optional[float] = None
    backend: str = "auto"


@dataclass(frozen=True)
class FrameCounts:
    """Frames sampled per question in training and at evaluation."""

    train: int = 32
    eval: int = 32


@dataclass(frozen=True)
class BuildInfo:
    """``build_info`` of one dataset; see ``SevilaDatasetBuilder``."""

    annotations: dict[str, list[str]] = field(default_factory=dict)  # split -> files (switched-off splits absent)
    videos: VideosConfig = field(default_factory=VideosConfig)
    n_frms: FrameCounts = field(default_factory=FrameCounts)
    image_size: int = 224
    on_unreadable: str = "fail"
    shards: dict[str, str] = field(default_factory=dict)  # split -> shard index


@dataclass(frozen=True)
class ProcessorConfig:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # the rest, read by the processor


@dataclass(frozen=True)
class DatasetConfig:
    """One ``datasets.<name>`` section, every key checked."""

    name: str
    build_info: BuildInfo
    vis_processor: dict[str, ProcessorConfig]
    data_type: str = "videos"

    #: keys of the section itself; ``type`` is LAVIS's choice of default file ("default")
    KEYS = ("data_type", "type", "vis_processor", "text_processor", "build_info")

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], data_type: str = "videos") -> "DatasetConfig":
        """``data_type`` is what the builder reads: "videos" (questions over clips) or
        "images" (single frames of videos, the tiny backbone's stage-0 image-text data)."""
        prefix = f"datasets.{name}"
        raw = check_keys(raw, cls.KEYS, prefix)
        if raw.get("text_processor") is not None:
            raise ValueError(f"{prefix}: SeViLA applies no text processor; remove text_processor from the config")
        if raw.get("data_type", data_type) != data_type:
            raise ValueError(f"{prefix}.data_type must be {data_type!r} for this dataset, got {raw['data_type']!r}")
        return cls(
            name=name,
            build_info=_build_info(raw.get("build_info"), f"{prefix}.build_info"),
            vis_processor=_processors(raw.get("vis_processor"), f"{prefix}.vis_processor"),
            data_type=data_type,
        )


def _build_info(raw: Any, prefix: str) -> BuildInfo:
    raw = check_keys(raw, _fields(BuildInfo), prefix)
    annotations = {}
    for split, entry in check_keys(raw.get("annotations"), SPLITS, f"{prefix}.annotations").items():
        storage = check_keys(entry, ("storage",), f"{prefix}.annotations.{split}").get("storage")
        if storage is None:  # the split is switched off
            continue
        files = [storage] if isinstance(storage, str) else storage
        if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
            raise ValueError(f"{prefix}.annotations.{split}.storage must be a file, a list of files or null, got {storage!r}")
        annotations[split] = list(files)
    videos = check_keys(raw.get("videos"), _fields(VideosConfig), f"{prefix}.videos")
    if videos.get("fps") is not None and (isinstance(videos["fps"], bool) or not isinstance(videos["fps"], (int, float))):
        raise ValueError(f"{prefix}.videos.fps must be a number or null, got {videos['fps']!r}")
    if "backend" in videos:
        _choice(videos["backend"], f"{prefix}.videos.backend", BACKENDS)
    frames = check_keys(raw.get("n_frms"), _fields(FrameCounts), f"{prefix}.n_frms")
    for role, value in frames.items():
        _int(value, f"{prefix}.n_frms.{role}")
    shards = {}
    for split, index in check_keys(raw.get("shards"), SPLITS, f"{prefix}.shards").items():
        if index is not None:
            if not isinstance(index, str) or not index:
                raise ValueError(f"{prefix}.shards.{split} must be a shard index path or null, got {index!r}")
            shards[split] = index
    return BuildInfo(
        annotations=annotations,
        videos=VideosConfig(**videos),
        n_frms=FrameCounts(**frames),
        image_size=_int(raw.get("image_size", BuildInfo.image_size), f"{prefix}.image_size"),
        on_unreadable=_choice(raw.get("on_unreadable", "fail"), f"{prefix}.on_unreadable", ON_UNREADABLE),
        shards=shards,
    )


class _ReadKeys(dict):
    """A mapping that records which keys a processor's ``config_kwargs`` asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):  # noqa: D401 - dict API
        self.asked.add(key)
        return default


def processor_keys(processor_cls: type) -> Optional[set[str]]:
    """The config keys a processor reads, when it declares them (ours do); None if unknown."""
    reader = getattr(processor_cls, "config_kwargs", None)
    if reader is None:
        return None
    probe = _ReadKeys()
    reader(probe)
    return probe.asked


def _processors(raw: Any, prefix: str) -> dict[str, ProcessorConfig]:
    from lavis.common.registry import registry  # the processors' registry (LAVIS)

    out = {}
    for role, entry in check_keys(raw, ("train", "eval"), prefix).items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise ValueError(f"{prefix}.{role} needs a processor name, got {entry!r}")
        processor_cls = registry.get_processor_class(entry["name"])
        if processor_cls is None:
            raise KeyError(f"{prefix}.{role}: vis processor {entry['name']!r} is not registered in LAVIS")
        known = processor_keys(processor_cls)
        if known is not None:
            check_keys(entry, known | {"name"}, f"{prefix}.{role}")
        out[role] = ProcessorConfig(name=entry["name"], options={k: v for k, v in entry.items() if k != "name"})
    return out
