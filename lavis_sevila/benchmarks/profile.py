"""Where the grouped, cached forward chain spends its time, part by part (torch.profiler).

    python -m lavis_sevila.benchmarks.profile [--shapes medium] [--videos 2] [--questions 10]
        [--label NAME] [--markdown docs/speed.md]

``ours+cache`` of ``benchmarks/inference.py`` (questions sorted by video, batches of
``--batch`` questions, 8 as there, a cold feature cache), one warm-up run, then one
profiled run.  Each part is a ``record_function`` label around the method that does it:
the ViT, the two Q-Formers, the LLM encoder, the LLM calls (encoder + decoder steps + LM
head), and what is left (prompt layout, gathers, cache keys, Python).  Beside each part its
multiply-add floor (FLOPs of its matmuls at the shapes run, computed from the config) at the
rate this run's own largest matmuls reached, so what is above the floor is overhead.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from lavis_sevila.benchmarks.common import benchmark_parser, build_model, finish, machine, start
from lavis_sevila.benchmarks.inference import batch_of, make_inputs

PARTS = ("ViT", "localizer Q-Former", "answerer Q-Former", "LLM encoder", "LLM decoder steps + LM head", "rest")


def _label(obj: Any, name: str, label: str) -> None:
    method = getattr(obj, name)

    def labelled(*args, **kwargs):
        with torch.profiler.record_function(label):
            return method(*args, **kwargs)

    setattr(obj, name, labelled)


def _count_rows(model) -> dict[str, list[int]]:
    """Record the rows x tokens each LLM encoder call and each Q-Former call sees (for the floor)."""
    seen: dict[str, list[int]] = {"encoder_tokens": [], "qformer_frames": []}
    encode = model.llm._encode

    def counting(inputs):
        seen["encoder_tokens"].append(int(inputs.embeds.shape[0] * inputs.embeds.shape[1]))
        return encode(inputs)

    model.llm._encode = counting
    role_tokens = model.role_tokens

    def counting_tokens(role, feats):
        seen["qformer_frames"].append(int(feats.shape[0]))
        return role_tokens(role, feats)

    model.role_tokens = counting_tokens
    return seen


def floors(model, seen: dict[str, list[int]], frames: int) -> dict[str, float]:
    """Multiply-adds x 2 (FLOPs) of the matmuls of the ViT, Q-Formers and LLM encoder."""
    v, q, t = model.config.vision, model.config.qformer, model.llm.module.config
    patches = (v.img_size // v.patch_size) ** 2 + 1
    hidden = int(v.embed_dim * v.mlp_ratio)
    vit = frames * v.depth * (patches * (4 * v.embed_dim**2 + 2 * v.embed_dim * hidden)
                              + 2 * patches**2 * v.embed_dim)
    inner = t.num_heads * t.d_kv
    ffn = (3 if t.is_gated_act else 2) * t.d_model * t.d_ff
    encoder = sum(seen["encoder_tokens"]) * t.num_layers * (4 * t.d_model * inner + ffn)
    cross_layers = q.num_hidden_layers // q.cross_attention_freq
    per_frame = (q.num_hidden_layers * q.num_query_token * (4 * q.hidden_size**2 + 2 * q.hidden_size * q.intermediate_size)
                 + cross_layers * (2 * patches * v.embed_dim * q.hidden_size + 2 * q.num_query_token * q.hidden_size**2))
    qformer = sum(seen["qformer_frames"]) * per_frame
    return {"ViT": 2.0 * vit, "Q-Formers": 2.0 * qformer, "LLM encoder": 2.0 * encoder}


def run(shape: str, args) -> dict[str, Any]:
    model = build_model(shape, feature_cache_mb=4096)
    model.config.num_keyframes = args.keyframes
    inputs = make_inputs(model, args.videos, args.frames, args.questions, seed=1)
    rows = sorted(inputs["rows"])
    batches = [batch_of(inputs, rows[i : i + args.batch], keyed=True) for i in range(0, len(rows), args.batch)]
    _label(model, "_encode_pixels", "ViT")
    role_tokens = model.role_tokens

    def labelled_tokens(role, feats):
        with torch.profiler.record_function(f"{role} Q-Former"):
            return role_tokens(role, feats)

    model.role_tokens = labelled_tokens
    _label(model.llm, "_encode", "LLM encoder")
    _label(model.llm, "greedy_step_logits", "LLM call")
    if hasattr(model.llm, "first_step_token_logits"):
        _label(model.llm, "first_step_token_logits", "LLM call (first step)")
    seen = _count_rows(model)

    def chain():
        model.feature_cache = type(model.feature_cache)(model.feature_cache.max_bytes)
        return [r for batch in batches for r in model.predict(batch)]

    chain()
    for values in seen.values():
        values.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        began = time.perf_counter()
        chain()
        total = time.perf_counter() - began
    events = {e.key: e for e in prof.key_averages()}
    sec = lambda key: events[key].cpu_time_total / 1e6 if key in events else 0.0  # noqa: E731
    mm = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::mm" and e.input_shapes]
    rate = max((2 * s[0][0] * s[0][1] * s[1][1] / (e.self_cpu_time_total / 1e6 / e.count)
                for e in mm for s in [e.input_shapes] if len(s) >= 2 and len(s[0]) == 2 and len(s[1]) == 2
                and e.self_cpu_time_total > 0), default=float("nan"))
    encoder = sec("LLM encoder")
    parts = {
        "ViT": sec("ViT"),
        "localizer Q-Former": sec("localizer Q-Former"),
        "answerer Q-Former": sec("answerer Q-Former"),
        "LLM encoder": encoder,
        "LLM decoder steps + LM head": sec("LLM call") + sec("LLM call (first step)") - encoder,
    }
    parts["rest"] = total - sum(parts.values())
    floor = floors(model, seen, frames=len({r[0] for r in rows}) * args.frames)
    copies = events.get("aten::copy_")
    return {"shape": shape, "total": total, "parts": parts, "floor": floor, "rate": rate,
            "questions": len(rows), "copy_s": copies.self_cpu_time_total / 1e6 if copies else 0.0,
            "copy_calls": copies.count if copies else 0}


def table(results: list[dict[str, Any]], args) -> str:
    lines = [
        f"`ours+cache` profiled ({args.label}): {args.videos} videos x {args.frames} frames -> {args.keyframes} "
        f"keyframes, {args.questions} questions per video sorted by video, batches of {args.batch}, cold cache; "
        "one warm-up run, then one run under torch.profiler (its own overhead included).",
        f"Machine: {machine()}.",
        "Floor: the part's matmul FLOPs at the best matmul rate this run reached (the rest of the part is "
        "memory-bound work and overhead).",
        "",
    ]
    for r in results:
        lines += [f"{r['shape']}, {r['questions']} questions: {r['total']:.2f} s in all, {r['total'] / r['questions']:.3f} s "
                  f"per question; best matmul rate {r['rate'] / 1e9:.0f} GFLOP/s; aten::copy_ {r['copy_s']:.2f} s "
                  f"({r['copy_calls']} calls)", "",
                  "| part | seconds | share | FLOP floor |", "|---|---|---|---|"]
        floor = {"ViT": r["floor"]["ViT"], "LLM encoder": r["floor"]["LLM encoder"]}
        for name, value in r["parts"].items():
            at = f"{floor[name] / r['rate']:.2f} s" if name in floor else ""
            lines.append(f"| {name} | {value:.2f} s | {100 * value / r['total']:.0f}% | {at} |")
        lines.append(f"| (both Q-Formers) | | | {r['floor']['Q-Formers'] / r['rate']:.2f} s |")
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    parser = benchmark_parser(__doc__.split("\n\n")[0], repeats=1)
    parser.set_defaults(shapes=["medium"], videos=2)
    parser.add_argument("--questions", type=int, default=10, help="questions per video")
    parser.add_argument("--batch", type=int, default=8, help="questions per batch")
    parser.add_argument("--label", default="this tree", help="which code was profiled (the block's name)")
    args = parser.parse_args(argv)
    start(args)
    results = [run(shape, args) for shape in args.shapes]
    name = "".join(c if c.isalnum() else "-" for c in args.label)
    finish(table(results, args), args, "profile", f"profile-{'-'.join(args.shapes)}-{name}", argv)
    return results


if __name__ == "__main__":
    main()
