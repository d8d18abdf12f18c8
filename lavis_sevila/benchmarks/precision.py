"""The LLM in bf16 on CPU vs fp32: how far the scores move, how often the choices change, time.

    python -m lavis_sevila.benchmarks.precision [--shapes tiny medium] [--videos 8] [--frames 32]
        [--questions 2] [--repeats 1] [--markdown docs/speed.md]

``model.llm.dtype: bf16`` on a CPU runs T5's matmuls in bf16 (AVX-512 BF16 / AMX where the
CPU has them); the ViT and the Q-Formers stay fp32 (``vision.precision: fp16`` is refused
on CPU).  Same weights (the fp32 model's, cast), same inputs; ``SeViLA.predict`` with
grouped questions and a cold feature cache on both sides.  Prints the largest absolute
difference of the localizer and option scores, the share of questions whose keyframes or
answer differ, and both times.  Not a default: fp32 results are the reference.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch

from lavis_sevila.benchmarks.common import benchmark_parser, build_model, cpu_flags, finish, machine, spread, start, time_interleaved
from lavis_sevila.benchmarks.inference import batch_of, make_inputs


def run(shape: str, args) -> dict[str, Any]:
    fp32 = build_model(shape, feature_cache_mb=4096, num_keyframes=args.keyframes)
    bf16 = build_model(shape, feature_cache_mb=4096, num_keyframes=args.keyframes, **{"llm.dtype": "bf16"})
    bf16.load_state_dict(fp32.state_dict())  # same weights, T5's cast to bf16
    inputs = make_inputs(fp32, args.videos, args.frames, args.questions, seed=3)
    rows = sorted(inputs["rows"])
    batches = [batch_of(inputs, rows[i : i + args.videos], keyed=True) for i in range(0, len(rows), args.videos)]

    def path(model):
        def go():
            model.feature_cache = type(model.feature_cache)(model.feature_cache.max_bytes)
            return [r for b in batches for r in model.predict(b)]
        return go

    times, peak, out = time_interleaved({"fp32": path(fp32), "bf16 LLM": path(bf16)}, args.repeats,
                                        warmup=not args.no_warmup)
    ref, low = out["fp32"], out["bf16 LLM"]
    diff = lambda key: max(float((torch.tensor(a[key]) - torch.tensor(b[key])).abs().max()) for a, b in zip(ref, low))  # noqa: E731
    return {
        "shape": shape, "questions": len(rows), "times": times, "peak": peak,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "frame_diff": diff("frame_scores"), "option_diff": diff("option_scores"),
        "keyframes_changed": sum(a["keyframes"] != b["keyframes"] for a, b in zip(ref, low)) / len(rows),
        "answers_changed": sum(a["prediction"] != b["prediction"] for a, b in zip(ref, low)) / len(rows),
    }


def table(results: list[dict[str, Any]], args) -> str:
    lines = [
        f"LLM precision on CPU, {args.videos} videos x {args.frames} frames, {args.questions} questions per video, "
        f"grouped, cold cache; median of {args.repeats} interleaved rounds "
        f"{'without' if args.no_warmup else 'after one'} warm-up (min-max). Random weights: the differences "
        "of a trained model can be other.",
        f"Machine: {machine()}; CPU flags: {cpu_flags()}.",
        "",
        "| shape | questions | fp32 | bf16 LLM | speed-up | max abs diff, frame scores | max abs diff, option scores "
        "| keyframes changed | answers changed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['shape']} | {r['questions']} | {spread(r['times']['fp32'])} | {spread(r['times']['bf16 LLM'])} | "
            f"{r['median']['fp32'] / r['median']['bf16 LLM']:.2f}x | {r['frame_diff']:.3g} | {r['option_diff']:.3g} | "
            f"{100 * r['keyframes_changed']:.0f}% | {100 * r['answers_changed']:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    parser = benchmark_parser(__doc__.split("\n\n")[0], repeats=1)
    parser.add_argument("--questions", type=int, default=2, help="questions per video")
    args = parser.parse_args(argv)
    start(args)
    results = [run(shape, args) for shape in args.shapes]
    finish(table(results, args), args, "precision", "precision-" + "-".join(args.shapes), argv)
    return results


if __name__ == "__main__":
    main()
