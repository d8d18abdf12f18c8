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
from omegaconf import DictConfig, ListConfig, OmegaConf

from lavis_sevila.data.schema import FLAG, load_records
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset

CONFIG_ROOT = Path(__file__).resolve().parent.parent  # lavis_sevila/, where configs/ lives
SPLITS = ("train", "val", "test")


class SevilaDatasetBuilder(BaseDatasetBuilder):
    """Builds train/val/test :class:`SevilaVideoDataset` from ``build_info``.

    ``build_info``:
      annotations.<split>.storage  annotation jsonl (or a list of them) per split; null
                                   switches the split off
      videos.storage / pattern / fps / backend   see :class:`FrameSource`
      n_frms.train / n_frms.eval   frames sampled per question
      image_size                   decode size (frames are square)
      on_unreadable                evaluation: "fail" or "unanswered"
      shards.<split>               optional shard index: stream that split from
                                   WebDataset shards instead of decoding videos
    """

    DATASET_CONFIG_DICT: dict[str, str] = {}

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

    def _annotation_paths(self) -> dict[str, list[Path]]:
        annotations = self.config.build_info.annotations
        paths = {}
        for split in annotations:
            if split not in SPLITS:
                raise ValueError(f"{self._name()}: unknown split {split!r} in build_info.annotations (use {SPLITS})")
            storage = annotations[split].storage
            if storage is None:  # the split is switched off in the config
                continue
            paths[split] = [Path(p) for p in (storage if isinstance(storage, (list, ListConfig)) else [storage])]
        return paths

    def build(self) -> dict[str, Any]:
        self.build_processors()
        if self.config.get("text_processor") is not None:
            raise ValueError(f"{self._name()}: SeViLA applies no text processor; remove text_processor from the config")
        info = self.config.build_info
        shards = info.get("shards") or {}
        datasets = {}
        for split, paths in self._annotation_paths().items():
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
                n_frms=int(info.n_frms["train" if training else "eval"]),
                image_size=int(info.image_size),
                on_unreadable=str(info.get("on_unreadable", "fail")),
            )
            if shards.get(split):
                from lavis_sevila.data.shards import ShardDataset  # WebDataset, only when asked for

                datasets[split] = ShardDataset(shards[split], records, vis_processor, **common)
            else:
                datasets[split] = SevilaVideoDataset(records, self._frame_source(info.videos), vis_processor, **common)
            logging.info("%s %s: %d records from %s", self._name(), split, len(records), ", ".join(map(str, paths)))
        return datasets

    def build_processors(self) -> None:
        """LAVIS's processors, with ``build_info.image_size`` as the one frame size.

        Frames are decoded at ``build_info.image_size``; the processors are given the same
        size, and a processor config that names another size is refused.
        """
        image_size = int(self.config.build_info.image_size)
        processors = self.config.get("vis_processor") or {}
        for role in ("train", "eval"):
            config = processors.get(role)
            if config is None:
                raise ValueError(f"{self._name()}: vis_processor.{role} is not configured")
            if registry.get_processor_class(config.name) is None:
                raise KeyError(f"{self._name()}: vis processor {config.name!r} is not registered in LAVIS")
            if config.get("image_size", image_size) != image_size:
                raise ValueError(
                    f"{self._name()}: vis_processor.{role}.image_size is {config.image_size} but frames are "
                    f"decoded at build_info.image_size {image_size}; set only build_info.image_size"
                )
            self.vis_processors[role] = self._build_proc_from_cfg(OmegaConf.merge(config, {"image_size": image_size}))

    @staticmethod
    def _frame_source(videos: DictConfig) -> FrameSource:
        fps = videos.get("fps")
        return FrameSource(
            root=Path(videos.storage),
            pattern=str(videos.get("pattern", "{video}.mp4")),
            fps=None if fps is None else float(fps),
            backend=str(videos.get("backend", "auto")),
        )



@registry.register_builder("nextqa")
class NExTQABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/nextqa/defaults.yaml"}


@registry.register_builder("star")
class STARBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/star/defaults.yaml"}


@registry.register_builder("how2qa")
class How2QABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/how2qa/defaults.yaml"}


@registry.register_builder("tvqa")
class TVQABuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/tvqa/defaults.yaml"}


@registry.register_builder("vlep")
class VLEPBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/vlep/defaults.yaml"}


@registry.register_builder("qvh")
class QVHBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/qvh/defaults.yaml"}


@registry.register_builder("sevila_synthetic")
class SyntheticBuilder(SevilaDatasetBuilder):
    DATASET_CONFIG_DICT = {"default": "configs/datasets/sevila_synthetic/defaults.yaml"}
