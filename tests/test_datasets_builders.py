"""LAVIS builders: registration, our default YAMLs, --options overrides, nothing downloaded."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf

import lavis_sevila  # noqa: F401  (registers the builders)
import lavis_sevila.processors  # noqa: F401  (registers sevila_video_train / sevila_video_eval)
from lavis_sevila.data.schema import Annotation, write_annotations
from lavis_sevila.datasets import SevilaVideoDataset
from lavis_sevila.processors import SevilaVideoEvalProcessor, SevilaVideoTrainProcessor
from lavis_sevila.video.writer import numbered_frames, write_video

PACKAGE = Path(lavis_sevila.__file__).resolve().parent
BUILDERS = ("nextqa", "star", "how2qa", "tvqa", "vlep", "qvh", "sevila_synthetic")
SIZE = 32


@pytest.mark.parametrize("name", BUILDERS)
def test_builders_are_registered_with_our_default_config(name):
    builder = registry.get_builder_class(name)
    assert builder is not None
    path = Path(builder.default_config_path())
    assert path.is_relative_to(PACKAGE / "configs" / "datasets") and path.is_file()
    config = OmegaConf.load(path).datasets
    assert list(config) == [name]
    info = config[name].build_info
    assert set(info.annotations) <= {"train", "val", "test"} and info.videos.storage and "{video}" in info.videos.pattern
    assert int(info.n_frms.train) >= 1 and int(info.n_frms.eval) >= 1 and int(info.image_size) >= 1
    assert config[name].vis_processor.train.name == "sevila_video_train"
    assert config[name].vis_processor.eval.name == "sevila_video_eval"
    assert "text_processor" not in config[name]


def record(qid: str, **changes) -> Annotation:
    fields = dict(schema_version=1, dataset="nextqa", kind="multiple_choice", qid=qid, video="clip",
                  question="what?", options=["a.", "b.", "c.", "d.", "e."], answer=1, qtype="CW")
    fields.update(changes)
    return Annotation(**fields)


@pytest.fixture
def data_dir(tmp_path):
    write_video(tmp_path / "clip.mp4", numbered_frames(20, SIZE, SIZE), 10)
    write_annotations(tmp_path / "train.jsonl", [record("t1"), record("t2", start=0.5, end=1.5)])
    write_annotations(tmp_path / "val.jsonl", [record("v1")])
    return tmp_path


def options_for(data_dir: Path, *more: str) -> list[str]:
    """What a user passes as ``--options`` (LAVIS dot-list syntax)."""
    return [
        f"datasets.nextqa.build_info.annotations.train.storage={data_dir / 'train.jsonl'}",
        f"datasets.nextqa.build_info.annotations.val.storage={data_dir / 'val.jsonl'}",
        "datasets.nextqa.build_info.annotations.test.storage=null",
        f"datasets.nextqa.build_info.videos.storage={data_dir}",
        "datasets.nextqa.build_info.n_frms.train=4",
        "datasets.nextqa.build_info.n_frms.eval=6",
        f"datasets.nextqa.build_info.image_size={SIZE}",
        *more,
    ]


def dataset_config(*options: str):
    """LAVIS's own merge: the builder's default YAML < the run config < --options."""
    run_config = OmegaConf.create({"datasets": {"nextqa": {}}})
    merged = OmegaConf.merge(Config.build_dataset_config(run_config), OmegaConf.from_dotlist(list(options)))
    return merged.datasets.nextqa


def test_build_datasets_from_defaults_and_options(data_dir, monkeypatch):
    import lavis.datasets.builders.base_dataset_builder as base

    monkeypatch.setattr(base, "download_url", lambda *a, **k: pytest.fail("a builder tried to download"))
    builder = registry.get_builder_class("nextqa")(dataset_config(*options_for(data_dir)))
    datasets = builder.build_datasets()
    assert sorted(datasets) == ["train", "val"]  # test switched off with storage=null
    train, val = datasets["train"], datasets["val"]
    assert isinstance(train, SevilaVideoDataset) and train.training and train.sampling == "random"
    assert not val.training and val.sampling == "uniform" and val.on_unreadable == "fail"
    assert (train.n_frms, val.n_frms, val.image_size) == (4, 6, SIZE)
    assert isinstance(train.vis_processor, SevilaVideoTrainProcessor)
    assert type(val.vis_processor) is SevilaVideoEvalProcessor and val.vis_processor.image_size == SIZE
    assert [r.qid for r in train.annotation] == ["t1", "t2"]
    sample = val[0]
    assert sample["video"].shape == (6, 3, SIZE, SIZE) and sample["video"].dtype == torch.float32
    assert sample["video"].min() < 0  # normalised with CLIP statistics, not just /255
    batch = train.collater([train[0], train[1]])
    assert batch["video"].shape == (2, 4, 3, SIZE, SIZE) and batch["skipped"] == []


def test_configuration_mistakes_are_reported(data_dir, tmp_path):
    def build(*more):
        return registry.get_builder_class("nextqa")(dataset_config(*options_for(data_dir), *more)).build_datasets()

    with pytest.raises(FileNotFoundError, match="NExTQABuilder val annotations not found: .*absent.jsonl"):
        build(f"datasets.nextqa.build_info.annotations.val.storage={tmp_path / 'absent.jsonl'}")
    with pytest.raises(ValueError, match="no text processor"):
        build("datasets.nextqa.text_processor.eval.name=blip_question")
    with pytest.raises(ValueError, match="image_size is 224 but frames are decoded at build_info.image_size 32"):
        build("datasets.nextqa.vis_processor.eval.image_size=224")
    with pytest.raises(KeyError, match="not registered"):
        build("datasets.nextqa.vis_processor.train.name=no_such_processor")
    with pytest.raises(ValueError, match=r"unknown key\(s\) datasets.nextqa.build_info.annotations.dev; known: \['test', 'train', 'val'\]"):
        build(f"datasets.nextqa.build_info.annotations.dev.storage={data_dir / 'val.jsonl'}")
    with pytest.raises(ValueError, match="on_unreadable"):
        build("datasets.nextqa.build_info.on_unreadable=ignore")


def test_a_split_can_stream_from_shards(data_dir):
    from dataset_builders.shards import BuildOptions, build_shards
    from lavis_sevila.data.shards import ShardDataset
    from lavis_sevila.datasets import FrameSource

    build_shards([data_dir / "val.jsonl"], FrameSource(root=data_dir), data_dir / "shards",
                 BuildOptions(n_frms=6, image_size=SIZE), min_shards=1, workers=1, log=lambda *a: None)
    config = dataset_config(*options_for(data_dir), f"datasets.nextqa.build_info.shards.val={data_dir / 'shards'}")
    datasets = registry.get_builder_class("nextqa")(config).build_datasets()
    assert isinstance(datasets["train"], SevilaVideoDataset)
    streamed = datasets["val"]
    assert isinstance(streamed, ShardDataset) and not streamed.training
    (sample,) = list(streamed)
    assert sample["question_id"] == "v1" and sample["video"].shape == (6, 3, SIZE, SIZE)


@pytest.mark.parametrize("option, unknown, known", [
    ("build_info.n_frm.eval=4", "datasets.nextqa.build_info.n_frm", "'n_frms'"),
    ("build_info.videos.storge=/x", "datasets.nextqa.build_info.videos.storge", "'storage'"),
    ("build_info.n_frms.evaluate=4", "datasets.nextqa.build_info.n_frms.evaluate", "'eval', 'train'"),
    ("build_info.annotations.val.storag=/x", "datasets.nextqa.build_info.annotations.val.storag", "'storage'"),
    ("build_info.shards.valid=/x", "datasets.nextqa.build_info.shards.valid", "'val'"),
    ("vis_processor.train.min_scal=0.2", "datasets.nextqa.vis_processor.train.min_scal", "'min_scale'"),
    ("vis_processor.evaluation.name=sevila_video_eval", "datasets.nextqa.vis_processor.evaluation", "'eval'"),
    ("buildinfo.image_size=32", "datasets.nextqa.buildinfo", "'build_info'"),
])
def test_an_unknown_dataset_key_is_an_error_listing_the_known_keys(data_dir, option, unknown, known):
    """Typos fail when the builder is made (start-up), before any file is read."""
    with pytest.raises(ValueError) as error:
        registry.get_builder_class("nextqa")(dataset_config(*options_for(data_dir), f"datasets.nextqa.{option}"))
    assert f"unknown key(s) {unknown}; known: [" in str(error.value) and known in str(error.value)


@pytest.mark.parametrize("option, message", [
    ("build_info.n_frms.eval=0", "n_frms.eval must be an integer >= 1"),
    ("build_info.n_frms.train=four", "n_frms.train must be an integer >= 1"),
    ("build_info.image_size=0", "image_size must be an integer >= 1"),
    ("build_info.videos.backend=ffmpeg", "videos.backend must be one of"),
    ("data_type=images", "data_type must be 'videos'"),
])
def test_bad_dataset_values_are_errors(data_dir, option, message):
    with pytest.raises(ValueError, match=message):
        registry.get_builder_class("nextqa")(dataset_config(*options_for(data_dir), f"datasets.nextqa.{option}"))


def test_every_default_dataset_config_parses():
    from lavis_sevila.datasets.builders import builder_class

    for name in BUILDERS:
        builder = builder_class(name)()  # LAVIS's own path: the default YAML
        assert builder.settings.name == name and builder.settings.build_info.annotations


def _run_config(tmp_path, *options):
    from lavis_sevila.cli import load_config

    return load_config("projects/sevila/synthetic/eval_qa.yaml", list(options))


def test_a_misspelt_dataset_name_lists_the_registered_ones(tmp_path, monkeypatch):
    from lavis import tasks

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    cfg = _run_config(tmp_path, "datasets.sevila_synthtic.build_info.image_size=32")
    with pytest.raises(KeyError, match=r"unknown dataset 'sevila_synthtic'.*registered datasets: .*nextqa.*sevila_synthetic"):
        tasks.setup_task(cfg).build_datasets(cfg)


@pytest.mark.parametrize("options, message", [
    (["model.num_keyframes=8", "datasets.sevila_synthetic.build_info.n_frms.eval=4"],
     "model.num_keyframes is 8 but datasets.sevila_synthetic.build_info.n_frms.eval is 4"),
    (["datasets.sevila_synthetic.build_info.n_frm.eval=4"], "unknown key(s) datasets.sevila_synthetic.build_info.n_frm"),
    (["datasets.sevila_synthetic.build_info.videos.storge=/x"], "unknown key(s) datasets.sevila_synthetic.build_info.videos.storge"),
])
def test_start_up_refuses_inconsistent_or_misspelt_dataset_config(tmp_path, monkeypatch, options, message):
    """Through the entry point's own flow: the error comes before any data or model is touched."""
    from lavis_sevila import cli

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    monkeypatch.setattr("lavis_sevila.datasets.builders.SevilaDatasetBuilder.build",
                        lambda self: pytest.fail("datasets were built before the config was checked"))
    with pytest.raises((ValueError, KeyError)) as error:
        cli.run("projects/sevila/synthetic/eval_qa.yaml", options, evaluate_only=True)
    assert message in str(error.value)


def test_finetune_answerer_needs_as_many_training_frames_as_keyframes(monkeypatch):
    from lavis import tasks

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    from lavis_sevila.cli import load_config

    cfg = load_config("projects/sevila/synthetic/finetune_answerer.yaml",
                      ["model.num_keyframes=6", "datasets.sevila_synthetic.build_info.n_frms.train=4"])
    with pytest.raises(ValueError, match="model.num_keyframes is 6 but datasets.sevila_synthetic.build_info.n_frms.train is 4"):
        tasks.setup_task(cfg).build_datasets(cfg)


def test_a_misspelt_dataset_name_in_the_config_file_lists_the_registered_ones(tmp_path):
    from lavis_sevila.cli import load_config

    text = (Path(__file__).resolve().parent.parent / "projects/sevila/synthetic/eval_qa.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("sevila_synthetic:", "sevila_synthtic:"))
    with pytest.raises(KeyError, match=r"unknown dataset 'sevila_synthtic'.*registered datasets: "):
        load_config(str(bad), [])


def test_a_pipeline_checks_every_step_before_the_first_one_trains(tmp_path, monkeypatch):
    """num_keyframes > n_frms.eval in the last (evaluation) step fails before step 1 trains."""
    from lavis_sevila import pipeline

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"pipeline:\n  output_dir: {tmp_path / 'out'}\n  steps:\n"
        "    - {name: train, cfg: projects/sevila/synthetic/finetune_answerer.yaml}\n"
        "    - name: evaluate\n      cfg: projects/sevila/synthetic/eval_qa.yaml\n      evaluate: true\n"
        "      inputs: [train]\n"
        "      options: [model.num_keyframes=8, datasets.sevila_synthetic.build_info.n_frms.eval=4]\n"
    )
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("a step ran before every step was checked"))
    with pytest.raises(ValueError, match="model.num_keyframes is 8 but datasets.sevila_synthetic.build_info.n_frms.eval is 4"):
        pipeline.run_pipeline(pipeline.Pipeline.load(str(spec)))


def test_a_lavis_dataset_name_is_refused_with_ours_listed():
    from lavis_sevila.datasets.builders import builder_class

    with pytest.raises(KeyError, match=r"'coco_caption' is one of LAVIS's own.*registered SeViLA datasets: how2qa, nextqa, qvh, sevila_image_text, sevila_synthetic, sevila_synthetic_blind, star, tvqa, vlep"):
        builder_class("coco_caption")
    with pytest.raises(KeyError, match=r"registered datasets: how2qa, nextqa, qvh, sevila_image_text, sevila_synthetic, sevila_synthetic_blind, star, tvqa, vlep\"?$"):
        builder_class("nextqq")
