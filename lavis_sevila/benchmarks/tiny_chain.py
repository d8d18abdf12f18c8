"""Time SeViLA's forward chain (ViT once -> localizer on n frames -> answerer on k) on CPU.

``python -m lavis_sevila.benchmarks.tiny_chain [--videos 8] [--frames 32] [--keyframes 4]
[--repeats 5] [--model-type tiny]`` prints, for the model it built, the median wall time
per batch and per video of each part and of the whole chain, and what it ran.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-type", default="tiny")
    args = parser.parse_args(argv)

    from lavis_sevila.data import prompts
    from lavis_sevila.models import SeViLA

    torch.manual_seed(0)
    model = SeViLA.from_model_type(args.model_type).eval()
    size = model.config.vision.img_size
    video = torch.randn(args.videos, args.frames, 3, size, size)
    prompt = prompts.multiple_choice("What colour is the circle that appears?", ["red", "green", "blue", "yellow", "magenta"], 0)
    loc, qa = [prompt.loc_input] * args.videos, [prompt.qa_input] * args.videos

    parts: dict[str, list[float]] = {"vit": [], "localizer": [], "answerer": [], "chain": []}
    with torch.inference_mode():
        for repeat in range(args.repeats + 1):  # the first pass warms up
            t0 = time.perf_counter()
            feats = model.encode_frames(video)
            t1 = time.perf_counter()
            chosen, _ = model.keyframes(feats, loc, k=args.keyframes)
            t2 = time.perf_counter()
            model.answer_logits(model.gather_frames(feats, chosen), qa)
            t3 = time.perf_counter()
            if repeat:
                for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    parts[key].append(value)
    median = {key: statistics.median(values) for key, values in parts.items()}
    print(f"SeViLA {args.model_type}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{args.videos} videos x {args.frames} frames at {size}px -> {args.keyframes} keyframes")
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} runs after 1 warm-up")
    print(f"{'part':<10} {'ms/batch':>10} {'ms/video':>10}")
    for key, seconds in median.items():
        print(f"{key:<10} {1000 * seconds:>10.1f} {1000 * seconds / args.videos:>10.2f}")
    return median


if __name__ == "__main__":
    main()
