"""One training step (forward + backward), side by side in one run: the authors' way vs ours.

    python -m lavis_sevila.benchmarks.training_step [--shapes tiny medium]
        [--stages refine_localizer finetune_answerer] [--videos 8] [--frames 32] [--repeats 3]
        [--markdown docs/speed.md]

Same weights and batch on every path; each step is forward, ``loss.backward()`` and zeroed
gradients (no optimizer update, so every step sees the same weights):

- ``authors``: a re-enactment from the spec (section 6): the ViT under ``no_grad``; for
  ``refine_localizer`` the frozen answerer's full teacher-forced pass on every frame (all
  target positions, the whole vocabulary) read at position 1; for ``finetune_answerer`` the
  frozen localizer's ``generate(max_new_tokens=30)`` over every frame prompt.  Then the
  trained role's loss.  Frozen roles in eval mode on both sides, so the pseudo-labels and
  keyframes are the same and checked equal.  The localizer's loss is one teacher-forced call
  over every (frame, question) row, as theirs is.
- ``ours``: ``SeViLA.forward`` of the stage (frame features computed in the step).
- ``ours+cache``: the same with ``clip_key``s and a warm feature cache, i.e. epoch 2 onwards
  of a run whose frame sampling is fixed (shards, eval processor).
- ``ours+cache+labels`` (refinement only): also ``model.pseudo_label_cache`` warm, so the
  frozen answerer's pass is skipped (same conditions: fixed frames, epoch 2 onwards).  It does
  not apply to the paper's recipe with random frame sampling or random crops (features change
  per step).
- ``ours+cache, bf16 LLM`` (``--bf16``): ``ours+cache`` with ``model.llm.dtype: bf16``; its
  choices and loss are measured against fp32 (agreement, relative loss), not required equal.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch

from lavis_sevila.benchmarks.common import benchmark_parser, build_model, cpu_flags, finish, machine, spread, start, time_interleaved
from lavis_sevila.benchmarks.inference import batch_of, make_inputs
from lavis_sevila.data import prompts


BF16 = "ours+cache, bf16 LLM"


def authors_step(model, batch: dict[str, Any], stage: str, k: int) -> dict[str, Any]:
    with torch.no_grad():
        feats = model._encode_pixels(batch["video"])
    if stage == "refine_localizer":
        with model.frozen_role("answerer"):
            b, t = feats.shape[:2]
            inputs = model._single_frame_inputs("answerer", feats, batch["qa_input"])
            target = model.layout.targets(batch["qa_output"], feats.device).repeat(t)
            logits = model.llm.teacher_forced(inputs, target.ids, target.mask).logits
            letters = logits[:, 1, model.letter_ids()].reshape(b, t, -1)
            truth = torch.tensor([int(a) for a in batch["answer_idx"]])
            labels = letters.argmax(-1) == truth[:, None]
        loss = authors_localizer_loss(model, feats, batch["loc_input"], labels)
        check = labels
    else:
        with model.frozen_role("localizer"):
            chosen = torch.tensor([r["keyframes"] for r in _localize(model, batch, feats, k)])
        loss = model.answerer_loss(model.gather_frames(feats, chosen), batch["qa_input"], batch["qa_output"])
        check = chosen
    loss.backward()
    model.zero_grad(set_to_none=True)
    return {"loss": float(loss), "check": check}


def authors_localizer_loss(model, feats: torch.Tensor, loc_texts, labels: torch.Tensor) -> torch.Tensor:
    """Their localizer loss: one T5 call on all B*T rows, padded to the batch's longest text."""
    inputs = model._single_frame_inputs("localizer", feats, loc_texts)
    words = model.layout.targets([prompts.NO, prompts.YES], feats.device)
    pick = labels.reshape(-1).long()
    with model.serving("localizer"):
        return model.llm.teacher_forced(inputs, words.ids[pick], words.mask[pick]).loss


def _localize(model, batch, feats, k):
    from lavis_sevila.benchmarks.inference import generate_scores

    b, t = feats.shape[:2]
    loc = model._single_frame_inputs("localizer", feats, batch["loc_input"])
    yes = generate_scores(model, loc)[0][:, model.token_ids.yes].reshape(b, t)
    return [{"keyframes": row.tolist()} for row in torch.sort(torch.topk(yes, k, dim=-1).indices, dim=-1).values]


def ours_step(model, batch: dict[str, Any]) -> dict[str, Any]:
    out = model(batch)
    out["loss"].backward()
    model.zero_grad(set_to_none=True)
    return {"loss": float(out["loss"])}


def ours_check(model, batch: dict[str, Any], stage: str) -> torch.Tensor:
    """What our step's frozen role decided (pseudo-labels or keyframes), recomputed untimed."""
    role = "answerer" if stage == "refine_localizer" else "localizer"
    with model.frozen_role(role):
        feats = model.encode_frames(batch["video"], batch.get("clip_key"))
        if stage == "refine_localizer":
            return model.pseudo_labels(feats, batch["qa_input"], batch["qa_output"], batch["num_options"])
        return model.keyframes(feats, batch["loc_input"])[0]


def run(shape: str, stage: str, args) -> dict[str, Any]:
    model = build_model(shape, feature_cache_mb=4096)
    model.config.num_keyframes = args.keyframes
    model.set_stage(stage)
    model.train()
    inputs = make_inputs(model, args.videos, args.frames, 1, seed=2)
    batch = batch_of(inputs, inputs["rows"], keyed=True)
    plain = {k: v for k, v in batch.items() if k != "clip_key"}
    cache = model.feature_cache
    model.encode_frames(batch["video"], batch["clip_key"])  # warm: an earlier epoch saw these clips

    def ours():
        model.feature_cache = None
        try:
            return ours_step(model, plain)
        finally:
            model.feature_cache = cache

    paths = {"authors": lambda: authors_step(model, plain, stage, args.keyframes), "ours": ours,
             "ours+cache": lambda: ours_step(model, batch)}
    if stage == "refine_localizer":  # stage 3 with fixed frames, epoch 2 onwards: labels known too
        from lavis_sevila.models.feature_cache import PseudoLabelCache

        def ours_labels():
            model.pseudo_label_cache = labels
            try:
                return ours_step(model, batch)
            finally:
                model.pseudo_label_cache = None

        labels = PseudoLabelCache()
        ours_labels()
        paths["ours+cache+labels"] = ours_labels
    low = None
    if args.bf16:  # the opt-in precision (model.llm.dtype: bf16): same weights, T5 cast to bf16
        low = build_model(shape, feature_cache_mb=4096, **{"llm.dtype": "bf16"})
        low.load_state_dict(model.state_dict())
        low.config.num_keyframes = args.keyframes
        low.set_stage(stage)
        low.train()
        low.encode_frames(batch["video"], batch["clip_key"])
        paths[BF16] = lambda: ours_step(low, batch)
    times, peak, out = time_interleaved(paths, args.repeats, warmup=not args.no_warmup)
    ref = out["authors"]
    tolerance = None
    if low is not None:  # measured, not required equal: bf16 moves near-tied choices
        result = out.pop(BF16)
        agree = (ours_check(low, batch, stage) == ref["check"]).float().mean().item()
        tolerance = {"agree": 100 * agree, "loss": abs(result["loss"] - ref["loss"]) / abs(ref["loss"])}
    model.feature_cache = None
    out["ours"]["check"] = ours_check(model, plain, stage)
    model.feature_cache = cache
    out["ours+cache"]["check"] = ours_check(model, batch, stage)
    if "ours+cache+labels" in out:
        out["ours+cache+labels"]["check"] = torch.stack(list(labels._items.values()))
    for name, result in out.items():
        if not torch.equal(result["check"], ref["check"]):
            raise AssertionError(f"{stage}: {name} has other pseudo-labels / keyframes than the authors' path")
        if abs(result["loss"] - ref["loss"]) > 1e-5:
            raise AssertionError(f"{stage}: {name} loss {result['loss']} vs authors' {ref['loss']}")
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"shape": shape, "stage": stage, "times": times, "median": median, "peak": peak, "bf16": tolerance,
            "params": sum(p.numel() for p in model.parameters()), "img": model.config.vision.img_size}


def table(results: list[dict[str, Any]], args) -> str:
    lines = [
        f"One training step (forward + backward), batch of {args.videos} videos x {args.frames} frames "
        f"({args.keyframes} keyframes for finetune_answerer); median of {args.repeats} interleaved rounds "
        f"{'without' if args.no_warmup else 'after one'} warm-up (min-max).",
        f"Machine: {machine()}; CPU flags: {cpu_flags()}.",
        f"Same loss (within 1e-5) and the same pseudo-labels / keyframes on all {'fp32 ' if args.bf16 else ''}paths: checked.",
    ]
    for r in results:
        if r["bf16"]:
            lines.append(f"`{BF16}` ({r['shape']}, {r['stage']}; `model.llm.dtype: bf16`, opt-in): pseudo-labels / "
                         f"keyframes agree with fp32 on {r['bf16']['agree']:.1f}%, loss {100 * r['bf16']['loss']:.2f}% "
                         "apart (relative).")
    lines += [
        "",
        "| shape | stage | path | time per step | vs authors | peak RSS growth |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in r["median"]:
            lines.append(f"| {r['shape']} ({r['params'] / 1e6:.1f} M params, {r['img']} px) | {r['stage']} | {name} | "
                         f"{spread(r['times'][name])} | {r['median']['authors'] / r['median'][name]:.2f}x | "
                         f"{r['peak'][name]:.0f} MiB |")
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    parser = benchmark_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["refine_localizer", "finetune_answerer"])
    parser.add_argument("--bf16", action="store_true",
                        help="also time ours+cache with the LLM in bf16 (CPUs with AVX-512 BF16/AMX, or CUDA)")
    args = parser.parse_args(argv)
    start(args)
    results = []
    for shape in args.shapes:
        for stage in args.stages:
            results.append(run(shape, stage, args))
            print("\n".join(table(results[-1:], args).splitlines()[-3:]), flush=True)
    stages = "" if args.stages == parser.get_default("stages") else "-" + "-".join(args.stages)
    finish(table(results, args), args, "training_step",
           f"training_step-{'-'.join(args.shapes)}-v{args.videos}{stages}-r{args.repeats}{'-bf16' if args.bf16 else ''}", argv)
    return results


if __name__ == "__main__":
    main()
