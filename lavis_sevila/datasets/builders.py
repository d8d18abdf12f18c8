"""LAVIS dataset builders for SeViLA's benchmarks, configured by our default YAMLs.

Every path is overridable from the command line, e.g.
``--options datasets.nextqa.build_info.videos.storage=/data/NExTVideo``.  Relative paths
are taken from the current directory (not LAVIS's cache root).  Nothing is downloaded:
LAVIS's download step does nothing here, and a configured file that is missing fails the
build with its dataset, split and path.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lavis.common.registry import registry
from lavis.datasets.builders.base_dataset_builder import BaseDatasetBuilder
from omegaconf import OmegaConf

from lavis_sevila.data.schema import FLAG, load_records
from lavis_sevila.datasets.config import DatasetConfig, VideosConfig
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset

CONFIG_ROOT = Path(__file__).resolve().parent.parent  # lavis_sevila/, where configs/ lives


def builder_class(name: str) -> type["SevilaDatasetBuilder"]:
    """The builder registered as ``name``; a clear error listing the registered names otherwise."""
    builder = registry.get_builder_class(name)
    ours = sorted(n for n, cls in registry.mapping["builder_name_mapping"].items() if issubclass(cls, SevilaDatasetBuilder))
    if builder is None:
        raise KeyError(f"unknown dataset {name!r} under datasets:; registered datasets: {', '.join(ours)}")
    if not issubclass(builder, SevilaDatasetBuilder):
        raise KeyError(f"dataset {name!r} is one of LAVIS's own, which SeViLA's tasks cannot read; "
                       f"registered SeViLA datasets: {', '.join(ours)}")
    return builder


class SevilaDatasetBuilder(BaseDatasetBuilder):
    """Builds train/val/test :class:`SevilaVideoDataset` from ``build_info``.

    ``build_info`` (every key checked at construction, see ``lavis_sevila.datasets.config``):
      annotations.<split>.storage  annotation jsonl (or a list of them) per split; null
                                   switches the split off
      videos.storage / pattern / fps / backend   see :class:`FrameSource`
      n_frms.train / n_frms.eval   frames sampled per question
      image_size                   decode size (frames are square)
      on_unreadable                evaluation: "fail" or "unanswered"
      shards.<split>               optional shard index: stream that split from
                                   WebDataset shards instead of decoding videos
    """

    NAME = ""  # the registered dataset name (set by ``register``)
    DATA_TYPE = "videos"  # what ``datasets.<name>.data_type`` must say
    DATASET_CONFIG_DICT: dict[str, str] = {}

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        raw = OmegaConf.to_container(self.config, resolve=True) if OmegaConf.is_config(self.config) else dict(self.config)
        self.settings = DatasetConfig.from_dict(self.NAME, raw, data_type=self.DATA_TYPE)

    @classmethod
    def default_config_path(cls, type: str = "default") -> str:
        """Our YAMLs live in this package, not in LAVIS's library root."""
        if type not in cls.DATASET_CONFIG_DICT:
            raise KeyError(f"{cls.__name__} has no config type {type!r} (known: {sorted(cls.DATASET_CONFIG_DICT)})")
        return str(CONFIG_ROOT / cls.DATASET_CONFIG_DICT[type])

    def _download_data(self) -> None:
        """LAVIS downloads annotations here; SeViLA never downloads (missing files fail in build)."""

    def _name(self) -> str:
        return type(self).__name__

    def build(self) -> dict[str, Any]:
        self.build_processors()
        info = self.settings.build_info
        datasets = {}
        for split, files in info.annotations.items():
            paths = [Path(p) for p in files]
            training = split == "train"
            vis_processor = self.vis_processors["train" if training else "eval"]
            missing = [str(path) for path in paths if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"{self._name()} {split} annotations not found: {', '.join(missing)}")
            records = load_records(paths)
            flagged = [record for record in records if FLAG in record.extra]
            if flagged:
                logging.warning(
                    "%s %s: %d of %d records are flagged (extra.%s), e.g. %s: %s", self._name(), split,
                    len(flagged), len(records), FLAG, flagged[0].qid, flagged[0].extra[FLAG],
                )
            common = dict(
                training=training,
                n_frms=info.n_frms.train if training else info.n_frms.eval,
                image_size=info.image_size,
                on_unreadable=info.on_unreadable,
            )
            if info.shards.get(split):
                from lavis_sevila.data.shards import ShardDataset  # WebDataset, only when asked for

                datasets[split] = ShardDataset(info.shards[split], records, vis_processor, **common)
            else:
                datasets[split] = SevilaVideoDataset(records, self._frame_source(info.videos), vis_processor, **common)
            logging.info("%s %s: %d records from %s", self._name(), split, len(records), ", ".join(map(str, paths)))
        return datasets

    def build_processors(self) -> None:
        """LAVIS's processors, with ``build_info.image_size`` as the one frame size.

        Frames are decoded at ``build_info.image_size``; the processors are given the same
        size, and a processor config that names another size is refused.
        """
        image_size = self.settings.build_info.image_size
        for role in ("train", "eval"):
            config = self.settings.vis_processor.get(role)
            if config is None:
                raise ValueError(f"{self._name()}: vis_processor.{role} is not configured")
            if config.options.get("image_size", image_size) != image_size:
                raise ValueError(
                    f"{self._name()}: vis_processor.{role}.image_size is {config.options['image_size']} but frames are "
                    f"decoded at build_info.image_size {image_size}; set only build_info.image_size"
                )
            merged = OmegaConf.create({**config.options, "name": config.name, "image_size": image_size})
            self.vis_processors[role] = self._build_proc_from_cfg(merged)

    @staticmethod
    def _frame_source(videos: VideosConfig) -> FrameSource:
        if videos.storage is None:
            raise ValueError("build_info.videos.storage is not set: give the folder of the videos")
        return FrameSource(
            root=Path(videos.storage),
            pattern=videos.pattern,
            fps=None if videos.fps is None else float(videos.fps),
            backend=videos.backend,
        )


def register(name: str):
    """Register a builder under ``name`` with LAVIS and tell it its name (for messages)."""

    def wrap(cls: type[SevilaDatasetBuilder]) -> type[SevilaDatasetBuilder]:
        cls.NAME = name
        return registry.register_builder(name)(cls)

    return wrap


@register("nextqa")
class NExTQABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/nextqa/defaults.yaml"}


@register("star")
class STARBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/star/defaults.yaml"}


@register("how2qa")
class How2QABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/how2qa/defaults.yaml"}


@register("tvqa")
class TVQABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/tvqa/defaults.yaml"}


@register("vlep")
class VLEPBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/vlep/defaults.yaml"}


@register("qvh")
class QVHBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/qvh/defaults.yaml"}


@register("sevila_synthetic")
class SyntheticBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/sevila_synthetic/defaults.yaml"}
