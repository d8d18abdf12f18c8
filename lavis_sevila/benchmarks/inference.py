"""Forward-chain inference, side by side in one run: the authors' generate-based path vs ours.

    python -m lavis_sevila.benchmarks.inference [--shapes tiny medium] [--questions 1 10]
        [--videos 8] [--frames 32] [--keyframes 4] [--repeats 3] [--markdown docs/speed.md]

Same weights, same frames, same questions on every path:

(a) ``authors``: a re-enactment of the authors' inference (spec sections 5 and 7), written
    from the spec: batches of questions as their loader builds them (each question carries
    its own video), the ViT run for every question, the localizer's ``generate(
    max_new_tokens=30)`` over every frame prompt reading ``scores[0][:, yes]``, ``topk`` then
    time order, a second ``generate(max_new_tokens=30)`` for the answer reading
    ``scores[1][:, letters]``.  LAVIS's T5 class and its ``generate``.  Generous to them in
    one way: the answerer's Q-Former runs on the k keyframes only.
(b) ``ours``: ``SeViLA.predict`` on the same batches, no feature cache: the logits read
    without ``generate``; the ViT still runs for every question.
(c) ``ours+cache``: the questions of a video in the same batch (a loader over annotations
    sorted by video), ``clip_key``s in the batch and a cold feature cache: each video's
    frames through the ViT and the localizer's Q-Former once, the localizer's T5 on frames x
    questions.

(d) ``ours+cache+compile`` (with ``--compile``): (c) with ``model.llm.compile: true`` (the
    T5 encoder through ``torch.compile``); compiled and warmed on the first batch before
    anything is timed, the compile time printed and written under the table.

The run fails unless all paths pick the same keyframes and answers (scores within 1e-4
of ours: the paths cut their LLM calls into other chunks with other padding).  Prints samples (questions) per second,
ratios, each path's peak resident memory growth and the settings.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from lavis_sevila.benchmarks.common import benchmark_parser, build_model, cpu_flags, finish, machine, questions, spread, start, time_interleaved
from lavis_sevila.data import prompts


def make_inputs(model, videos: int, frames: int, per_video: int, seed: int) -> dict[str, Any]:
    size = model.config.vision.img_size
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(videos, frames, 3, size, size, generator=g)
    asked = questions(videos * per_video, seed)
    rows = [(v, q) for q in range(per_video) for v in range(videos)]  # question-major: a batch spans videos
    return {"clips": clips, "rows": rows, "asked": asked, "per_video": per_video}


def batch_of(inputs: dict[str, Any], rows: list[tuple[int, int]], keyed: bool) -> dict[str, Any]:
    videos, asked, per_video = inputs["clips"], inputs["asked"], inputs["per_video"]
    texts = [prompts.multiple_choice(*asked[v * per_video + q][:2], asked[v * per_video + q][2]) for v, q in rows]
    batch = {
        "video": torch.stack([videos[v] for v, _ in rows]),
        "question_id": [f"v{v}q{q}" for v, q in rows],
        "loc_input": [t.loc_input for t in texts], "qa_input": [t.qa_input for t in texts],
        "qa_output": [t.qa_output for t in texts], "answer_idx": [asked[v * per_video + q][2] for v, q in rows],
        "num_options": torch.full((len(rows),), 5, dtype=torch.long),
    }
    if keyed:
        batch["clip_key"] = [f"bench/video{v}|frames=0..{videos.shape[1] - 1}" for v, _ in rows]
    return batch


def generate_scores(model, inputs) -> tuple:
    inputs = model.llm.cast(inputs)  # the LLM's dtype; on a GPU under its autocast, as the authors run it
    with model.llm.precision(inputs.embeds.device):
        return model.llm.module.generate(
            inputs_embeds=inputs.embeds, attention_mask=inputs.mask, num_beams=1, do_sample=False,
            max_new_tokens=30, min_length=1, return_dict_in_generate=True, output_scores=True,
        ).scores


def authors_batch(model, batch: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """The authors' forward chain on one batch, generate-based (see the module docstring)."""
    feats = model._encode_pixels(batch["video"])  # the ViT, again for every question
    b, t = feats.shape[:2]
    loc = model._single_frame_inputs("localizer", feats, batch["loc_input"])
    yes = generate_scores(model, loc)[0][:, model.token_ids.yes].reshape(b, t)
    chosen = torch.sort(torch.topk(yes, k, dim=-1).indices, dim=-1).values
    qa = model._video_inputs(model.gather_frames(feats, chosen), batch["qa_input"])
    scores = generate_scores(model, qa)
    step2 = scores[1] if len(scores) > 1 else scores[0]  # (their code crashes here when all rows stop)
    letters = step2[:, list(model.token_ids.letters)]
    return [{"question_id": qid, "prediction": int(row.argmax()), "option_scores": row.tolist(),
             "keyframes": idx.tolist(), "frame_scores": s.tolist()}
            for qid, row, idx, s in zip(batch["question_id"], letters, chosen, yes)]


def run_shape(shape: str, per_video: int, args) -> dict[str, Any]:
    model = build_model(shape, device=args.device, feature_cache_mb=4096)
    model.config.num_keyframes = args.keyframes
    inputs = make_inputs(model, args.videos, args.frames, per_video, seed=1)
    inputs["clips"] = inputs["clips"].to(args.device)
    rows, size = inputs["rows"], args.videos
    plain = [batch_of(inputs, rows[i : i + size], keyed=False) for i in range(0, len(rows), size)]
    by_video = sorted(rows)
    grouped = [batch_of(inputs, by_video[i : i + size], keyed=True) for i in range(0, len(by_video), size)]
    cache = model.feature_cache

    def authors():
        with torch.no_grad():
            return [r for batch in plain for r in authors_batch(model, batch, args.keyframes)]

    def ours():
        model.feature_cache = None
        try:
            return [r for batch in plain for r in model.predict(batch)]
        finally:
            model.feature_cache = cache

    def ours_cached():
        model.feature_cache = type(cache)(cache.max_bytes)  # cold: each video encoded once per run
        return [r for batch in grouped for r in model.predict(batch)]

    paths = {"authors": authors, "ours": ours, "ours+cache": ours_cached}
    compile_s = None
    if args.compile:
        compiled = build_model(shape, device=args.device, feature_cache_mb=4096, **{"llm.compile": True})
        compiled.load_state_dict(model.state_dict())
        compiled.config.num_keyframes = args.keyframes
        began = time.perf_counter()
        compiled.predict(grouped[0])  # compile (dynamic shapes) and warm, untimed
        compiled.predict(grouped[-1])  # a second shape: the one recompile to dynamic sizes
        compile_s = time.perf_counter() - began

        def ours_compiled():
            compiled.feature_cache = type(cache)(cache.max_bytes)
            return [r for batch in grouped for r in compiled.predict(batch)]

        paths["ours+cache+compile"] = ours_compiled
    times, peak, out = time_interleaved(paths, args.repeats, warmup=not args.no_warmup)
    check_same(out)
    n = len(rows)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"shape": shape, "per_video": per_video, "questions": n, "times": times, "median": median, "peak": peak,
            "params": sum(p.numel() for p in model.parameters()), "img": model.config.vision.img_size,
            "vocab": model.llm.module.config.vocab_size, "compile_s": compile_s}


def check_same(out: dict[str, list[dict[str, Any]]]) -> None:
    """Same keyframes and answers on all paths; scores close (raises AssertionError)."""
    index = {name: {r["question_id"]: r for r in records} for name, records in out.items()}
    ref = index["ours"]
    for name, records in index.items():
        if records.keys() != ref.keys():
            raise AssertionError(f"{name} answered other questions than ours")
        tol = 1e-4  # chunks of other rows and other padding: float rounding of ~1e-5 between paths
        for qid, record in records.items():
            mine = ref[qid]
            if record["keyframes"] != mine["keyframes"] or record["prediction"] != mine["prediction"]:
                raise AssertionError(f"{name} and ours disagree on {qid}: {record['keyframes']} {record['prediction']} "
                                     f"vs {mine['keyframes']} {mine['prediction']}")
            for key in ("option_scores", "frame_scores"):
                if not torch.allclose(torch.tensor(record[key]), torch.tensor(mine[key]), atol=tol, rtol=0):
                    raise AssertionError(f"{name} and ours: {key} of {qid} differ by more than {tol}")


def table(results: list[dict[str, Any]], args) -> str:
    lines = [
        f"Forward chain, {args.videos} videos x {args.frames} frames -> {args.keyframes} keyframes, batches of "
        f"{args.videos} questions; median of {args.repeats} interleaved rounds "
        f"{'without' if args.no_warmup else 'after one'} warm-up (min-max); peak RSS growth from each path's first run.",
        f"Machine: {machine()}; CPU flags: {cpu_flags()}.",
        "Same keyframes and answers on all paths: checked (scores within 1e-4 of ours on every path).",
        "",
        "| shape | questions/video | questions | path | time | questions/s | vs authors | peak RSS growth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in r["median"]:
            med = r["median"][name]
            lines.append(
                f"| {r['shape']} ({r['params'] / 1e6:.1f} M params, {r['img']} px, vocab {r['vocab']}) | "
                f"{r['per_video']} | {r['questions']} | {name} | {spread(r['times'][name])} | "
                f"{r['questions'] / med:.2f} | {r['median']['authors'] / med:.1f}x | {r['peak'][name]:.0f} MiB |")
    compiles = [f"{r['shape']} q{r['per_video']}: {r['compile_s']:.1f} s" for r in results if r["compile_s"] is not None]
    if compiles:
        lines += ["", "One-time compile and warm-up of `ours+cache+compile` (two batches, untimed above): "
                  + ", ".join(compiles) + "."]
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    parser = benchmark_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--questions", nargs="+", type=int, default=[1, 10], help="questions per video")
    parser.add_argument("--compile", action="store_true", help="also time ours+cache with model.llm.compile")
    args = parser.parse_args(argv)
    start(args)
    results = []
    for shape in args.shapes:
        for per_video in args.questions:
            results.append(run_shape(shape, per_video, args))
            print("\n".join(table(results[-1:], args).splitlines()[-3:]), flush=True)
    block = f"inference-{'-'.join(args.shapes)}-v{args.videos}-q{'-'.join(map(str, args.questions))}"
    finish(table(results, args), args, "inference", block, argv)
    return results


if __name__ == "__main__":
    main()
