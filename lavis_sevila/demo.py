"""The embedded default main job: SeViLA's recipe on the synthetic benchmark, on CPU.

``python -m lavis_sevila.demo [--seeds 0 1 2]`` (``make demo`` runs one seed):

1. writes the synthetic benchmark for the seed (several coloured events per video; the
   question names the one that matters);
2. runs ``projects/sevila/synthetic/pipeline_demo.yaml`` through the same entry points,
   runner and tasks as the real datasets: stage 0 (the tiny backbone's stand-in for BLIP-2
   pre-training, on single frames of the train videos), then SeViLA's stages with the ViT
   and LLM frozen, then one evaluation per paper row;
3. prints the table and checks the claims (met / NOT met) for every seed, and with several
   seeds the mean and min-max of every row; saves a plot of per-frame localizer scores.

``--family t5|opt|llama`` runs every step (stage 0 included) with that LLM family's tiny
model (``FAMILY_MODEL_TYPES``), the one switch for the whole recipe.

Every number printed is read from the evaluation files the run wrote; ``--write-doc``
writes docs/demo.md from the same numbers.  A seed fixes the data, the initialisation
and the data order, so the same seed gives the same table on the same machine.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO_PIPELINE = Path("projects/sevila/synthetic/pipeline_demo.yaml")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DATA_PREFIX = "data/synthetic/"  # where the project configs expect the benchmark

QA_ROWS = (
    ("eval_zero_shot_uniform", "Zero-shot answerer, 4 uniform frames"),
    ("eval_zero_shot_sevila", "Zero-shot SeViLA 32->4 (stage-0 Q-Former as localizer)"),
    ("eval_uniform", "Fine-tuned answerer, 4 uniform frames"),
    ("eval_pseudo_labels_only", "  + localizer refined from pseudo-labels only"),
    ("eval_pretrained_localizer", "  + localizer pre-trained on spans"),
    ("eval_refined_localizer", "  + localizer pre-trained, then refined"),
    ("eval_question_blind", "  same localizer, question removed from its prompt"),
    ("eval_oracle", "Oracle: answerer on the named event's frames"),
)
MOMENT_ROWS = (
    ("moments_pretrained_localizer", "pre-trained localizer"),
    ("moments_refined_localizer", "pre-trained + refined localizer"),
)
MOMENT_METRICS = (("MR-full-mAP", "mAP"), ("MR-full-R1@0.5", "R1@0.5"), ("MR-full-R1@0.7", "R1@0.7"))
PSEUDO_LABEL_GAIN = 15.0  # points over the fine-tuned uniform answerer
BLIND_MARGIN = 10.0  # points under the pre-trained localizer
MOMENT_MAP = 50.0
#: --family -> the tiny offline model type every step then uses (docs/backbones.md)
FAMILY_MODEL_TYPES = {"t5": "tiny", "opt": "tiny_opt", "llama": "tiny_llama"}


@dataclass(frozen=True)
class Claim:
    text: str
    check: Callable[[dict[str, float], float], bool]  # (row values, one question in points)


CLAIMS = (
    Claim("fine-tuned uniform < pseudo-labels only",
          lambda r, q: r["eval_uniform"] < r["eval_pseudo_labels_only"]),
    Claim("pseudo-labels only < pre-trained",
          lambda r, q: r["eval_pseudo_labels_only"] < r["eval_pretrained_localizer"]),
    Claim("pre-trained <= pre-trained + refined (1 question of slack)",
          lambda r, q: r["eval_pretrained_localizer"] <= r["eval_refined_localizer"] + q + 1e-9),
    Claim(f"pseudo-labels only >= fine-tuned uniform + {PSEUDO_LABEL_GAIN:.0f}",
          lambda r, q: r["eval_pseudo_labels_only"] >= r["eval_uniform"] + PSEUDO_LABEL_GAIN),
    Claim(f"question-blind < pre-trained - {BLIND_MARGIN:.0f}",
          lambda r, q: r["eval_question_blind"] < r["eval_pretrained_localizer"] - BLIND_MARGIN),
    Claim(f"moment retrieval mAP of the pre-trained localizer >= {MOMENT_MAP:.0f} (final model)",
          lambda r, q: r["moments_pretrained_localizer:mAP"] >= MOMENT_MAP),
)


def pipeline_path() -> Path:
    for root in (Path.cwd(), PACKAGE_ROOT):
        if (root / REPO_PIPELINE).is_file():
            return root / REPO_PIPELINE
    raise FileNotFoundError(f"{REPO_PIPELINE} not found: run the demo from the repository root")


def data_options(cfg_path: str, step_options: Sequence[str], data: Path) -> list[str]:
    """Options moving every ``data/synthetic/...`` path of a step (its config and its
    options) into ``data``; the project configs stay runnable as they are."""
    from omegaconf import OmegaConf

    moved = []
    datasets = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True).get("datasets") or {}
    for name, spec in datasets.items():
        info = (spec or {}).get("build_info") or {}
        for split, entry in (info.get("annotations") or {}).items():
            storage = (entry or {}).get("storage")
            if isinstance(storage, str) and storage.startswith(DATA_PREFIX):
                moved.append(f"datasets.{name}.build_info.annotations.{split}.storage={data / storage[len(DATA_PREFIX):]}")
        storage = (info.get("videos") or {}).get("storage")
        if isinstance(storage, str) and storage.startswith(DATA_PREFIX):
            moved.append(f"datasets.{name}.build_info.videos.storage={data / storage[len(DATA_PREFIX):]}")
    for option in step_options:
        key, _, value = option.partition("=")
        if value.startswith(DATA_PREFIX):
            moved.append(f"{key}={data / value[len(DATA_PREFIX):]}")
    return moved


def read_metrics(runs: Path, step: str) -> dict[str, Any]:
    return json.loads((runs / step / "metrics_final.json").read_text())["test"]


def seed_results(runs: Path) -> dict[str, float]:
    """Every table value of one seed's run, read from the evaluation files it wrote."""
    values = {step: float(read_metrics(runs, step)["accuracy"]) for step, _ in QA_ROWS}
    for step, _ in MOMENT_ROWS:
        metrics = read_metrics(runs, step)
        for key, short in MOMENT_METRICS:
            values[f"{step}:{short}"] = float(metrics[key])
    values["questions"] = float(read_metrics(runs, "eval_uniform")["total"])
    return values


def claim_verdicts(values: dict[str, float]) -> list[bool]:
    one_question = 100.0 / values["questions"]
    return [claim.check(values, one_question) for claim in CLAIMS]


def _spread(numbers: list[float]) -> str:
    mean = sum(numbers) / len(numbers)
    if len(numbers) == 1:
        return f"{mean:7.1f}"
    return f"{mean:7.1f}  [{min(numbers):5.1f}-{max(numbers):5.1f}]"


def table(results: dict[int, dict[str, float]]) -> str:
    """The QA rows, moment retrieval and the claims, for one or several seeds."""
    seeds = sorted(results)
    several = len(seeds) > 1
    head = "mean  [min-max]" if several else "accuracy"
    per_seed = "  " + " ".join(f"s{s:<5d}" for s in seeds) if several else ""
    width = 58
    questions = int(results[seeds[0]]["questions"])
    lines = [f"Synthetic benchmark, test split: {questions} questions, 5 options, accuracy % "
             f"(seed{'s' if several else ''} {' '.join(map(str, seeds))})", ""]
    lines.append(f"{'row':<{width}} {head:>20}{per_seed}")
    lines.append("-" * (width + 21 + len(per_seed)))
    for step, label in QA_ROWS:
        numbers = [results[s][step] for s in seeds]
        cells = "  " + " ".join(f"{n:<6.1f}" for n in numbers) if several else ""
        lines.append(f"{label:<{width}} {_spread(numbers):>20}{cells}")
    lines += ["", "Moment retrieval on the final model (test moment queries, one per event; %)", ""]
    lines.append(f"{'localizer':<{width}} " + " ".join(f"{short:>20}" for _, short in MOMENT_METRICS))
    lines.append("-" * (width + 1 + 21 * len(MOMENT_METRICS)))
    for step, label in MOMENT_ROWS:
        cells = " ".join(f"{_spread([results[s][f'{step}:{short}'] for s in seeds]):>20}" for _, short in MOMENT_METRICS)
        lines.append(f"{label:<{width}} {cells}")
    lines += ["", "Claims (checked for every seed)", ""]
    verdicts = {s: claim_verdicts(results[s]) for s in seeds}
    for i, claim in enumerate(CLAIMS):
        met = sum(verdicts[s][i] for s in seeds)
        status = "met" if met == len(seeds) else "NOT met"
        detail = f"  ({met} of {len(seeds)} seeds" + (
            "; NOT met on seed " + ", ".join(str(s) for s in seeds if not verdicts[s][i]) if met < len(seeds) else "") + ")"
        lines.append(f"  [{status:^7}] {claim.text}{detail if several or met < len(seeds) else ''}")
    return "\n".join(lines)


def all_met(results: dict[int, dict[str, float]]) -> bool:
    return all(all(claim_verdicts(values)) for values in results.values())


def plot(runs: Path, data: Path, path: Path, videos: int = 4) -> Path:
    """Per-frame localizer scores under the QA prompt for a few test videos.

    Each panel: the named event's frames (green), the other events' frames (grey, labelled
    with their shape), and the "yes" logit that ranks frames for keyframe selection,
    min-max scaled per video, for the localizers of the table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def records(step: str) -> list[dict[str, Any]]:
        text = (runs / step / "result" / "predictions_test_final.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    curves = (("eval_pseudo_labels_only", "pseudo-labels only"), ("eval_pretrained_localizer", "pre-trained"),
              ("eval_refined_localizer", "pre-trained + refined"), ("eval_question_blind", "question removed"))
    scores = {step: records(step) for step, _ in curves}
    questions = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    count = min(videos, len(questions))
    fig, axes = plt.subplots(count, 1, figsize=(10, 2.0 * count), sharex=True, squeeze=False)
    for row in range(count):
        ax = axes[row, 0]
        question = questions[row]
        frames = np.arange(len(scores[curves[0][0]][row]["frame_scores"]))
        named = tuple(question["extra"]["target_frames"])
        for shape, _colour, first in question["extra"]["events"]:
            window = int(question["extra"]["target_frames"][1] - question["extra"]["target_frames"][0] + 1)
            is_named = first == named[0]
            ax.axvspan(first - 0.5, first + window - 0.5, color="tab:green" if is_named else "0.8",
                       alpha=0.35 if is_named else 0.6, label="named event" if is_named else None)
            ax.text(first + window / 2 - 0.5, 1.02, shape, ha="center", fontsize=7)
        for step, label in curves:
            record = scores[step][row]
            assert record["question_id"] == question["qid"], (record["question_id"], question["qid"])
            value = np.asarray(record["frame_scores"])
            scaled = (value - value.min()) / max(value.max() - value.min(), 1e-9)
            ax.plot(frames, scaled, marker="o", markersize=2.5, linewidth=1, label=label)
        ax.set_ylim(-0.05, 1.15)
        ax.set_ylabel("yes logit\n(scaled)", fontsize=8)
        ax.set_title(f"{question['qid']}: {question['question']}", fontsize=8)
    axes[-1, 0].set_xlabel("sampled frame (32 per video)")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=5, bbox_to_anchor=(0, 1.45))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_seed(seed: int, output: Path, extra_options: Sequence[str], reuse: bool, config=None,
             started: float | None = None) -> Path:
    """Data, stages and evaluations of one seed; returns the folder of its step outputs."""
    from dataset_builders.synthetic import SyntheticConfig, generate
    from lavis_sevila.pipeline import Pipeline, run_pipeline

    started = time.time() if started is None else started
    data = output / "data"
    config = dataclasses.replace(config or SyntheticConfig(), seed=seed)
    print(f"[demo] seed {seed}: writing the synthetic benchmark to {data}", flush=True)
    generate(data, config)
    pipeline = Pipeline.load(str(pipeline_path()), [f"run.seed={seed}", *extra_options])
    pipeline.output_dir = str(output / "runs")
    for step in pipeline.steps:
        step.options = data_options(step.cfg, step.options, data) + step.options
        step.options = [o for o in step.options if not o.partition("=")[2].startswith(DATA_PREFIX)]

    def announce(index: int, step) -> None:
        kind = "evaluate" if step.evaluate else "train"
        print(f"[demo] seed {seed}: step {index + 1}/{len(pipeline.steps)} {kind} {step.name} "
              f"({time.time() - started:.0f} s elapsed)", flush=True)

    run_pipeline(pipeline, reuse=reuse, on_step=announce)
    return Path(pipeline.output_dir)


def _quiet_process(threads: int) -> None:
    """Torch threads and the log level of a demo process (the main one or a seed worker)."""
    import warnings

    import torch

    from lavis_sevila.cli import setup_logging

    torch.set_num_threads(threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    setup_logging()
    logging.getLogger().setLevel(logging.WARNING)  # the table is the output; logs go to files


def _seed_job(job: tuple) -> tuple[int, dict[str, float], float]:
    """One seed from data to rows; top-level so ``--jobs`` can run it in a spawned process."""
    seed, output, options, reuse, config, threads = job
    if multiprocessing.current_process().name != "MainProcess":  # a --jobs worker
        if sys.platform.startswith("linux"):
            # a spawned worker inherits "spawn", which cannot pickle LAVIS's processors for
            # the data loader's workers; fork them as the single-process path does
            multiprocessing.set_start_method("fork", force=True)
        _quiet_process(threads)
    began = time.time()
    runs = run_seed(seed, output, options, reuse, config=config, started=began)
    return seed, seed_results(runs), time.time() - began


def machine() -> str:
    import torch

    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads")


def load_average() -> str:
    """The machine's load (1, 5, 15 min): the wall times mean little without it on a shared machine."""
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def write_doc(path: Path, text: str, command: str, seconds: dict[int, float], where: str) -> Path:
    """docs/demo.md's generated section: the table exactly as printed, and how it was made."""
    marker = "<!-- generated by python -m lavis_sevila.demo --write-doc; do not edit below -->"
    head = path.read_text().split(marker)[0] if path.exists() else ""
    times = ", ".join(f"seed {s}: {t:.0f} s" for s, t in sorted(seconds.items()))
    # with --reuse the trained stages found in --output were kept: the times are evaluation only
    what = ("--reuse: trained stages kept, so evaluation only" if "--reuse" in command.split()
            else "stage 0 included")
    body = (f"{marker}\n\n## What it printed\n\n`{command}` on {where}.\n"
            f"Wall time per seed ({what}): {times}.\n\n"
            f"```\n{text}\n```\n")
    path.write_text(head + body)
    return path


def main(argv: Sequence[str] | None = None, config=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="SeViLA on the synthetic benchmark with the tiny model (CPU)")
    parser.add_argument("--output", default="output/demo", help="folder for data, checkpoints and results")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one full run per seed")
    parser.add_argument("--options", nargs="+", default=[], help="key=value applied to every pipeline step")
    parser.add_argument("--reuse", action="store_true", help="keep trained stages found in --output")
    parser.add_argument("--write-doc", metavar="PATH", help="write the printed table into this markdown file")
    parser.add_argument("--report-only", action="store_true",
                        help="train and evaluate nothing: print (and --write-doc) the table of a finished run in --output")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per seed (default 1: the tiny model gains little from more, and one "
                             "fixed count gives the same table on every machine; the table is for that count)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds trained at once, each in its own process with --threads threads "
                             "(e.g. --jobs 2 on 2 cores); the tables do not depend on it")
    parser.add_argument("--family", choices=sorted(FAMILY_MODEL_TYPES), default=None,
                        help="LLM family of every step's tiny model (default: the configs' own, t5)")
    args = parser.parse_args(argv)
    if args.family is not None:
        if any(o.startswith("model.model_type=") for o in args.options):
            parser.error("give --family or --options model.model_type=..., not both")
        args.options = [*args.options, f"model.model_type={FAMILY_MODEL_TYPES[args.family]}"]
        print(f"[demo] LLM family {args.family}: model type {FAMILY_MODEL_TYPES[args.family]} in every step", flush=True)
    if args.threads < 1 or args.jobs < 1:
        parser.error("--threads and --jobs must be at least 1")
    _quiet_process(args.threads)
    output = Path(args.output)
    results: dict[int, dict[str, float]] = {}
    seconds: dict[int, float] = {}
    if args.report_only:
        return report(output, args.write_doc)
    began = time.time()
    jobs = [(seed, output / f"seed{seed}", args.options, args.reuse, config, args.threads) for seed in args.seeds]
    with contextlib.ExitStack() as stack:
        if args.jobs == 1 or len(jobs) == 1:
            finished = map(_seed_job, jobs)
        else:
            pool = stack.enter_context(
                ProcessPoolExecutor(min(args.jobs, len(jobs)), mp_context=multiprocessing.get_context("spawn")))
            finished = (future.result() for future in as_completed([pool.submit(_seed_job, job) for job in jobs]))
        for seed, values, took in finished:
            results[seed], seconds[seed] = values, took
            print(f"[demo] seed {seed}: done in {took:.0f} s", flush=True)
            print("\n" + table({seed: values}) + "\n", flush=True)
    results = dict(sorted(results.items()))
    first = output / f"seed{args.seeds[0]}"
    figure = plot(first / "runs", first / "data", output / "localizer_scores.png")
    text = table(results)
    if len(results) > 1:
        print("\n" + text + "\n")
    total = time.time() - began
    where = f"{machine()}, {args.jobs} seed(s) at once, load average {load_average()} (1/5/15 min) at the end"
    print(f"plot of per-frame localizer scores (seed {args.seeds[0]}): {figure}")
    print(f"wall time: {total:.0f} s on {where}")
    command = "python -m lavis_sevila.demo " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.write_doc:
        print(f"wrote {write_doc(Path(args.write_doc), text, command.strip(), seconds, where)}")
    summary = {"results": {str(s): v for s, v in results.items()}, "claims_met": all_met(results),
               "seconds": {str(s): round(t, 1) for s, t in seconds.items()}, "wall_seconds": round(total, 1), "plot": str(figure), "table": text,
               "machine": where, "command": command.strip(), "family": args.family or "t5"}
    output.mkdir(parents=True, exist_ok=True)
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def report(output: Path, doc: str | None) -> dict[str, Any]:
    """The table of a finished run, recomputed from its evaluation files (no training)."""
    summary = json.loads((output / "demo_summary.json").read_text())
    seeds = sorted(int(s) for s in summary["seconds"])
    results = {seed: seed_results(output / f"seed{seed}" / "runs") for seed in seeds}
    text = table(results)
    if text != summary["table"]:
        raise RuntimeError(f"{output}: the recomputed table differs from the one the run printed")
    print(text)
    if doc:
        where = summary.get("machine") or f"{machine()} (recorded at report time)"
        command = summary.get("command", f"python -m lavis_sevila.demo --output {output} --seeds {' '.join(map(str, seeds))}")
        seconds = {int(s): t for s, t in summary["seconds"].items()}
        print(f"wrote {write_doc(Path(doc), text, command, seconds, where)}")
    return {**summary, "table": text}


if __name__ == "__main__":
    main()
