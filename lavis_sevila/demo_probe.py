"""Diagnostics of one demo seed: why a row of the table is what it is.

``python -m lavis_sevila.demo_probe output/demo/seed0 [--split test] [--questions 100]``
reads the checkpoints and the synthetic benchmark one seed of ``lavis_sevila.demo`` wrote
and prints, per frame kind (the named event's frames, the other events' frames, frames
without an event):

* for the stage-0 and the stage-2 answerer: how often it answers the question right from
  that single frame (image layout), which is the stage-3 pseudo-label rule, hence the
  pseudo-labels' precision and recall against the named event's window;
* for every localizer of the table (stage-0 Q-Former, pre-trained, pseudo-labels only,
  pre-trained + refined, and the refined one with the question removed): how often its top
  4 frames (raw "yes" logit, as keyframe selection ranks them) contain the named event,
  what share of the named frames they hold, how often they also hold another event's frame
  (the distractor the answerer must then ignore), and the mean yes-minus-no logit.

It trains nothing and writes nothing; the numbers in docs/demo.md's recipe notes come from it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

KINDS = ("named", "other", "blank")
KEYFRAMES = 4


def frame_kinds(record: dict, frames: int) -> list[str]:
    """Per frame of a synthetic question record: "named", "other" (another event) or "blank"."""
    first, last = record["extra"]["target_frames"]
    window = last - first + 1
    events = {i for _shape, _colour, start in record["extra"]["events"] for i in range(start, start + window)}
    return ["named" if first <= i <= last else ("other" if i in events else "blank") for i in range(frames)]


class Probe:
    """The checkpoints of one seed's run and its benchmark's questions, frames decoded once."""

    def __init__(self, seed_dir: Path, split: str = "test", questions: int | None = None) -> None:
        from lavis_sevila.processors.video_processors import SevilaVideoEvalProcessor
        from lavis_sevila.video import read_clip

        self.runs, data = seed_dir / "runs", seed_dir / "data"
        lines = (data / f"{split}.jsonl").read_text().splitlines()
        self.records = [json.loads(line) for line in lines if line.strip()][:questions]
        if not self.records:
            raise ValueError(f"{data / split}.jsonl: no questions")
        config = json.loads((data / "synthetic.json").read_text())["config"]
        self.frames, size = int(config["frames"]), int(config["size"])
        process = SevilaVideoEvalProcessor(image_size=size)
        self.clips = {r["video"]: process(read_clip(data / "videos" / f"{r['video']}.mp4", self.frames, image_size=size).frames)
                      for r in self.records}

    def checkpoint(self, step: str) -> str:
        path = self.runs / step / "checkpoint_final.pth"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the demo for this seed first")
        return str(path)

    def model(self, steps: Sequence[str]):
        from lavis_sevila.models.sevila import SeViLA

        model = SeViLA.from_model_type("tiny", pretrained=self.checkpoint("pretrain_backbone"),
                                       finetuned=[self.checkpoint(s) for s in steps])
        return model.eval()

    @torch.no_grad()
    def answerer(self, steps: Sequence[str]) -> dict[str, float]:
        """% of frames of each kind the answerer answers right alone (= pseudo-label "yes")."""
        from lavis_sevila.data import prompts

        model = self.model(steps)
        right = {k: 0 for k in KINDS}
        total = {k: 0 for k in KINDS}
        for record in self.records:
            feats = model.encode_frames(self.clips[record["video"]][None])
            text = prompts.multiple_choice(record["question"], record["options"], record["answer"])
            labels = model.pseudo_labels(feats, [text.qa_input], [text.qa_output])[0]
            for label, kind in zip(labels.tolist(), frame_kinds(record, self.frames)):
                right[kind] += int(label)
                total[kind] += 1
        out = {kind: 100.0 * right[kind] / max(total[kind], 1) for kind in KINDS}
        out["precision"] = 100.0 * right["named"] / max(sum(right.values()), 1)
        out["recall"] = out["named"]
        return out

    @torch.no_grad()
    def localizer(self, steps: Sequence[str], blind: bool = False) -> dict[str, float]:
        """Top-4 composition (raw "yes" ranking) and mean yes-no per frame kind."""
        from lavis_sevila.data import prompts

        model = self.model(steps)
        has_named = named_share = has_other = 0.0
        margin = {k: [] for k in KINDS}
        for record in self.records:
            feats = model.encode_frames(self.clips[record["video"]][None])
            text = (prompts.mc_loc_input("", record["options"]) if blind
                    else prompts.multiple_choice(record["question"], record["options"], record["answer"]).loc_input)
            scores = model.frame_logits(feats, [text])
            kinds = frame_kinds(record, self.frames)
            top = [kinds[i] for i in scores.yes[0].topk(KEYFRAMES).indices.tolist()]
            has_named += "named" in top
            named_share += top.count("named") / max(kinds.count("named"), 1)
            has_other += "other" in top
            for value, kind in zip((scores.yes[0] - scores.no[0]).tolist(), kinds):
                margin[kind].append(value)
        n = len(self.records)
        out = {"top4 has named": 100 * has_named / n, "named frames in top4": 100 * named_share / n,
               "top4 has other event": 100 * has_other / n}
        out.update({f"yes-no {k}": sum(v) / max(len(v), 1) for k, v in margin.items()})
        return out


ANSWERERS = (("stage-0 answerer", ()), ("stage-2 answerer", ("finetune_answerer",)))
LOCALIZERS = (
    ("stage-0 Q-Former", (), False),
    ("pre-trained", ("pretrain_localizer",), False),
    ("pseudo-labels only", ("refine_zero_shot_localizer",), False),
    ("pre-trained + refined", ("pretrain_localizer", "refine_localizer"), False),
    ("refined, question removed", ("pretrain_localizer", "refine_localizer"), True),
)


def report(probe: Probe) -> str:
    lines = [f"{len(probe.records)} questions; answerer right on one frame, % of frames of each kind:"]
    for name, steps in ANSWERERS:
        a = probe.answerer(steps)
        lines.append(f"  {name:<26} named {a['named']:5.1f}  other {a['other']:5.1f}  blank {a['blank']:5.1f}"
                     f"  | pseudo-labels: precision {a['precision']:5.1f}  recall {a['recall']:5.1f}")
    lines.append("localizers (top 4 by raw yes logit, % of questions; mean yes-no logit per frame kind):")
    for name, steps, blind in LOCALIZERS:
        s = probe.localizer(steps, blind)
        lines.append(f"  {name:<26} top4 has named {s['top4 has named']:5.1f}  named frames in top4 "
                     f"{s['named frames in top4']:5.1f}  top4 has other event {s['top4 has other event']:5.1f}  | "
                     + "  ".join(f"{k} {s['yes-no ' + k]:+6.2f}" for k in KINDS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed_dir", type=Path, help="one seed's folder of a demo run (e.g. output/demo/seed0)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--questions", type=int, default=None, help="the first N questions (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = report(Probe(args.seed_dir, args.split, args.questions))
    print(text)
    return text


if __name__ == "__main__":
    main()
