"""The text prompts SeViLA's two roles read, exactly as the authors' datasets build them.

Every dataset builds its prompts here and nowhere else, so the wording the model was
trained with cannot drift between datasets, the demo and the tests.  The strings are
part of the model's behaviour (spec section 3): change them only together with the spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

LETTERS = "ABCDE"

MC_QA_SUFFIX = " Considering the information presented in the frame, select the correct answer from the options."
LOC_QA_SUFFIX = (
    " Does the information within the frame provide the necessary details to accurately answer the given question?"
)
VLEP_QA_PREFIX = "Upon observing the provided frames, what is the most probable subsequent event?"
VLEP_LOC_SUFFIX = " Does the information within the frame provide the necessary details to predict next event?"
QVH_OPTIONS = " Option A: yes. Option B: no."

YES, NO = "yes", "no"


@dataclass(frozen=True)
class Prompts:
    """What one question gives the model: the answerer and localizer inputs and the target."""

    qa_input: str
    loc_input: str
    qa_output: str | None  # "Option X"; None when the answer is unknown (test splits)


def option_letter(index: int) -> str:
    if not 0 <= index < len(LETTERS):
        raise ValueError(f"option index {index} is outside A..{LETTERS[-1]}")
    return LETTERS[index]


def answer_target(index: int) -> str:
    """The answerer's target text for option ``index`` ("Option A" ...)."""
    return f"Option {option_letter(index)}"


def answer_index(target: str) -> int:
    """Inverse of :func:`answer_target`: the option index named by its last letter."""
    letter = target.strip()[-1:]
    if letter not in LETTERS:
        raise ValueError(f"target {target!r} does not end with an option letter")
    return LETTERS.index(letter)


def _check_options(options: Sequence[str]) -> None:
    if not 1 <= len(options) <= len(LETTERS):
        raise ValueError(f"expected 1..{len(LETTERS)} options, got {len(options)}")


def mc_qa_input(question: str, options: Sequence[str]) -> str:
    _check_options(options)
    listed = "".join(f" Option {option_letter(j)}: {text}" for j, text in enumerate(options))
    return f"Question: {question}{listed}{MC_QA_SUFFIX}"


def mc_loc_input(question: str, options: Sequence[str]) -> str:
    _check_options(options)
    listed = "".join(f"{text} " for text in options)
    return f"Question: {question} Options: ({listed}){LOC_QA_SUFFIX}"


def vlep_qa_input(events: Sequence[str]) -> str:
    if len(events) != 2:
        raise ValueError(f"VLEP has exactly 2 candidate events, got {len(events)}")
    return f"{VLEP_QA_PREFIX} Option A: {events[0]} Option B: {events[1]}"


def vlep_loc_input(events: Sequence[str]) -> str:
    return vlep_qa_input(events) + VLEP_LOC_SUFFIX


def qvh_query(query: str) -> str:
    """QVHighlights queries end with a full stop in the authors' annotations."""
    query = query.strip()
    return query if query.endswith(".") else query + "."


def qvh_loc_input(query: str) -> str:
    return f"Question: {qvh_query(query)}{QVH_OPTIONS}{LOC_QA_SUFFIX}"


def multiple_choice(question: str, options: Sequence[str], answer: int | None) -> Prompts:
    """NExT-QA, STAR, How2QA, TVQA and the synthetic benchmark."""
    return Prompts(
        qa_input=mc_qa_input(question, options),
        loc_input=mc_loc_input(question, options),
        qa_output=None if answer is None else answer_target(answer),
    )


def next_event(events: Sequence[str], answer: int | None) -> Prompts:
    """VLEP: which of two events happens next."""
    return Prompts(
        qa_input=vlep_qa_input(events),
        loc_input=vlep_loc_input(events),
        qa_output=None if answer is None else answer_target(answer),
    )


def moment_query(query: str) -> Prompts:
    """QVHighlights: only the localizer reads a prompt; per-frame targets are yes/no."""
    return Prompts(qa_input="", loc_input=qvh_loc_input(query), qa_output=None)
