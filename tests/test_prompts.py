"""The prompt strings, byte for byte as spec section 3 writes them."""
import pytest

from lavis_sevila.data import prompts


def test_multiple_choice_prompts_match_the_spec():
    p = prompts.multiple_choice("why did the boy cry?", ["he fell.", "he was hungry."], answer=1)
    assert p.qa_input == (
        "Question: why did the boy cry? Option A: he fell. Option B: he was hungry."
        " Considering the information presented in the frame, select the correct answer from the options."
    )
    assert p.loc_input == (
        "Question: why did the boy cry? Options: (he fell. he was hungry. )"
        " Does the information within the frame provide the necessary details to accurately answer the given question?"
    )
    assert p.qa_output == "Option B"


def test_vlep_prompts_match_the_spec():
    p = prompts.next_event(["Ross will sit.", "Ross will leave."], answer=0)
    qa = (
        "Upon observing the provided frames, what is the most probable subsequent event?"
        " Option A: Ross will sit. Option B: Ross will leave."
    )
    assert p.qa_input == qa
    assert p.loc_input == qa + " Does the information within the frame provide the necessary details to predict next event?"
    assert p.qa_output == "Option A"


@pytest.mark.parametrize("query", ["A girl cooks", "A girl cooks."])
def test_qvh_prompt_adds_a_single_full_stop(query):
    assert prompts.moment_query(query).loc_input == (
        "Question: A girl cooks. Option A: yes. Option B: no."
        " Does the information within the frame provide the necessary details to accurately answer the given question?"
    )


def test_targets_round_trip_and_reject_bad_indices():
    assert [prompts.answer_target(i) for i in range(5)] == [f"Option {c}" for c in "ABCDE"]
    assert [prompts.answer_index(prompts.answer_target(i)) for i in range(5)] == list(range(5))
    with pytest.raises(ValueError):
        prompts.answer_target(5)
    with pytest.raises(ValueError):
        prompts.mc_qa_input("q?", [])
