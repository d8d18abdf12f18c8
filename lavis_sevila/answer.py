"""Answer one multiple-choice question about one video, and show why: ``python -m lavis_sevila.answer``.

    python -m lavis_sevila.answer clip.mp4 --question "What colour is the circle?" \\
        --choices red green blue yellow magenta --frames 32 --keyframes 4 --out output/answer

prints the answer, the probability of every choice and the keyframe timestamps (seconds in
the video), and writes a contact sheet PNG (:mod:`lavis_sevila.visualize`).  The web demo
(:mod:`lavis_sevila.webdemo`) calls :func:`load_model`, :func:`explain` and :func:`render`
from here, so both show the same thing computed the same way.

The model work is the public API and nothing else: ``SeViLA.from_model_type`` builds the
model (``--checkpoint`` files go to ``model.finetuned``, read by the checked, weights-only
loader in ``models/checkpoint.py``) and ``SeViLA.answer`` runs the forward chain.  The video
is decoded once, with the same call ``answer`` makes for a file path (``read_clip``, uniform
sampling, the model's image size), so the frames on the sheet are the frames the model
scored and the timestamps are those frames' times.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

DEFAULT_FRAMES = 32
MAX_FRAMES = 128  # the contact sheet and the localizer's batch stay reasonable
MIN_CHOICES, MAX_CHOICES = 2, 5  # option letters A..E (data/prompts.py)

EPILOG = """\
model types:
  tiny               a small randomly initialised SeViLA; builds in a second, fully offline.
                     Its answers mean nothing unless you give --checkpoint files trained for it.
  pretrain_flant5xl  the paper's model: EVA ViT-g + BLIP-2 Q-Former + Flan-T5-XL. The BLIP-2
                     weights are downloaded from LAVIS's URL and google/flan-t5-xl comes from the
                     Hugging Face hub (about 16 GB in all; a GPU with ~16 GB is advised).

real weights:
  python -m lavis_sevila.answer clip.mp4 --question "..." --choices A B C D E \\
      --model-type pretrain_flant5xl \\
      --checkpoint https://huggingface.co/Shoubin/SeViLA/resolve/main/sevila_pretrained.pth
  --checkpoint takes a local file or a URL (downloaded once into the cache) and may be given
  several times (loaded in order, e.g. a localizer checkpoint then an answerer checkpoint).
  Checkpoints are read weights-only and every tensor's shape is checked.
  Offline machines: download the files elsewhere and pass local paths (the hub model
  google/flan-t5-xl must then be in the Hugging Face cache).
"""


class InputError(ValueError):
    """A question, choices or frame counts that cannot be answered; the message says what to fix."""


@dataclass
class Explanation:
    """One answered question, with everything the contact sheet and the printout show."""

    video: str
    question: str
    choices: list[str]
    answer_index: int
    probabilities: list[float]
    keyframes: list[int]  # positions among the sampled frames, time order
    keyframe_times: list[float]  # seconds in the video
    frame_indices: list[int]  # frame number in the video of each sampled frame
    frame_times: list[float]  # seconds
    frame_scores: list[float]  # localizer "yes" logit of each sampled frame
    fps: float
    duration: float
    model_type: str  # as given to load_model ("" when unknown)
    weights: str  # where the weights came from, one line
    random_groups: list[str]  # weight groups left at their random initialisation

    @property
    def answer(self) -> str:
        return self.choices[self.answer_index]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "answer": self.answer}


def check_question(question: str, choices: Sequence[str], num_frames: int, num_keyframes: int) -> tuple[str, list[str]]:
    """The question and choices, stripped; InputError naming what is wrong otherwise."""
    question = (question or "").strip()
    if not question:
        raise InputError("the question is empty: type a question")
    cleaned = [c.strip() for c in choices if c is not None and c.strip()]
    if not MIN_CHOICES <= len(cleaned) <= MAX_CHOICES:
        raise InputError(f"give {MIN_CHOICES} to {MAX_CHOICES} non-empty choices, got {len(cleaned)}")
    if not 1 <= num_frames <= MAX_FRAMES:
        raise InputError(f"frames must be between 1 and {MAX_FRAMES}, got {num_frames}")
    if not 1 <= num_keyframes <= num_frames:
        raise InputError(f"keyframes must be between 1 and the number of frames ({num_frames}), got {num_keyframes}")
    return question, cleaned


def random_groups(model: Any) -> list[str]:
    """The checkpoint groups no weights were loaded for (they keep their random initialisation)."""
    from lavis_sevila.models.checkpoint import file_state, group_of

    return sorted({group_of(key) for key in file_state(model)} - set(model.weight_sources))


def describe_weights(model: Any) -> str:
    """One line: which weight groups were loaded from where, and which kept random values."""
    sources = dict(model.weight_sources)
    if not sources:
        return "random initialisation (no weights loaded): the answer is not meaningful"
    by_source: dict[str, list[str]] = {}
    for group, source in sources.items():
        by_source.setdefault(source, []).append(group)
    line = "; ".join(f"{', '.join(sorted(groups))} <- {source}" for source, groups in by_source.items())
    unloaded = random_groups(model)
    return line + (f"; random: {', '.join(unloaded)}" if unloaded else "")


def load_model(model_type: str = "tiny", checkpoints: Sequence[str] = (), device: str | None = None, seed: int = 0):
    """``SeViLA.from_model_type`` with ``checkpoints`` as ``model.finetuned``, in eval mode.

    ``seed`` fixes the random initialisation of whatever no checkpoint supplies (the tiny model).
    """
    import torch

    import lavis_sevila  # noqa: F401  (checks the environment, registers the model)
    from lavis_sevila.models import SeViLA

    torch.manual_seed(seed)
    overrides = {"finetuned": list(checkpoints)} if checkpoints else {}
    model = SeViLA.from_model_type(model_type, **overrides).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device)


def explain(model: Any, video: str | os.PathLike, question: str, choices: Sequence[str],
            num_frames: int = DEFAULT_FRAMES, num_keyframes: int | None = None,
            model_type: str = "") -> tuple[Explanation, Any]:
    """Answer ``question`` about ``video``; return the explanation and the sampled :class:`Clip`.

    Raises InputError for bad questions or counts and ``VideoReadError`` for a file that is
    not a readable video (its message names the reason).
    """
    from lavis_sevila.video import read_clip

    num_keyframes = model.config.num_keyframes if num_keyframes is None else num_keyframes
    question, choices = check_question(question, choices, num_frames, num_keyframes)
    # the read SeViLA.answer makes for a path; passing the frames keeps them for the sheet
    clip = read_clip(video, num_frames, mode="uniform", image_size=model.config.vision.img_size)
    result = model.answer(clip.frames, question, choices, num_keyframes=num_keyframes)
    times = [float(t) for t in clip.timestamps]
    explanation = Explanation(
        video=str(video),
        question=question,
        choices=choices,
        answer_index=result.index,
        probabilities=[float(p) for p in result.probabilities],
        keyframes=list(result.keyframes),
        keyframe_times=[times[k] for k in result.keyframes],
        frame_indices=[int(i) for i in clip.indices],
        frame_times=times,
        frame_scores=[float(s) for s in result.frame_scores],
        fps=float(clip.fps),
        duration=float(clip.duration),
        model_type=model_type,
        weights=describe_weights(model),
        random_groups=random_groups(model),
    )
    return explanation, clip


def render(explanation: Explanation, clip: Any, title: str | None = None):
    """The contact sheet of one explanation (a :class:`~lavis_sevila.visualize.ContactSheet`)."""
    from lavis_sevila.visualize import render_contact_sheet

    return render_contact_sheet(
        clip.frames.numpy(),
        scores=explanation.frame_scores,
        timestamps=explanation.frame_times,
        keyframes=explanation.keyframes,
        question=explanation.question,
        options=explanation.choices,
        probabilities=explanation.probabilities,
        answer_index=explanation.answer_index,
        title=title or f"{Path(explanation.video).name}: SeViLA ({explanation.model_type}), "
        f"{len(explanation.frame_times)} frames -> {len(explanation.keyframes)} keyframes",
        note=weights_note(explanation),
    )


def weights_note(explanation: Explanation) -> str:
    """A warning when some weights are random (empty when every group was loaded)."""
    if not explanation.random_groups:
        return ""
    if explanation.weights.startswith("random"):
        return "random weights: the scores and the answer are not meaningful"
    return f"not loaded, left random: {', '.join(explanation.random_groups)}"


def format_explanation(explanation: Explanation) -> str:
    """The text the CLI prints."""
    from lavis_sevila.data.prompts import option_letter

    e = explanation
    lines = [
        f"video: {e.video} ({e.duration:.2f} s at {e.fps:g} fps); {len(e.frame_times)} frames sampled, "
        f"{len(e.keyframes)} keyframes",
        f"model: {e.model_type}; weights: {e.weights}",
        f"question: {e.question}",
        f"answer: {option_letter(e.answer_index)}) {e.answer}  (p = {e.probabilities[e.answer_index]:.3f})",
        "probabilities:",
    ]
    for j, (choice, p) in enumerate(zip(e.choices, e.probabilities)):
        lines.append(f"  {option_letter(j)}) {choice:<30} {p:.3f}" + ("  <- answer" if j == e.answer_index else ""))
    lines.append("keyframes (time order):")
    for k, t in zip(e.keyframes, e.keyframe_times):
        lines.append(f"  {t:8.2f} s  sampled frame #{k} (video frame {e.frame_indices[k]}), score {e.frame_scores[k]:.3f}")
    return "\n".join(lines)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options the CLI and the web demo share."""
    parser.add_argument("--model-type", default="tiny", help="tiny (default, offline, random weights) or pretrain_flant5xl")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH_OR_URL",
                        help="SeViLA/BLIP-2 checkpoint to load (model.finetuned); repeat to load several in order")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation of unloaded parts (default 0)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lavis_sevila.answer",
        description="Answer a multiple-choice question about a video with SeViLA: print the answer, the "
        "probabilities and the keyframe timestamps, and write a contact sheet PNG (sampled frames, chosen "
        "keyframes framed, localizer score curve, answer).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", help="a video file (mp4, webm, mkv, avi ...) or a folder of frames")
    parser.add_argument("--question", required=True, help="the question, e.g. \"What does the man do after he sits down?\"")
    parser.add_argument("--choices", nargs="+", required=True, metavar="CHOICE",
                        help=f"{MIN_CHOICES} to {MAX_CHOICES} candidate answers (quote choices with spaces)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"frames sampled uniformly (default {DEFAULT_FRAMES})")
    parser.add_argument("--keyframes", type=int, default=None, help="keyframes the localizer keeps (default: the model's, 4)")
    parser.add_argument("--out", default="output/answer", help="folder for the contact sheet (default output/answer)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Explanation:
    args = parse_args(argv)
    from lavis_sevila.video import VideoReadError

    try:
        check_question(args.question, args.choices, args.frames, args.keyframes or 1)
    except InputError as error:
        raise SystemExit(f"error: {error}")
    model = load_model(args.model_type, args.checkpoint, args.device, args.seed)
    try:
        explanation, clip = explain(model, args.video, args.question, args.choices, args.frames, args.keyframes,
                                    model_type=args.model_type)
    except (InputError, VideoReadError) as error:
        raise SystemExit(f"error: {error}")
    sheet = render(explanation, clip)
    path = sheet.write(Path(args.out) / f"{Path(args.video).stem}_sevila.png")
    if args.json:
        print(json.dumps({**explanation.to_dict(), "contact_sheet": str(path)}, indent=2))
    else:
        print(format_explanation(explanation))
        print(f"contact sheet: {path}")
    return explanation


if __name__ == "__main__":
    main(sys.argv[1:])
