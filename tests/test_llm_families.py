"""The LLM family registry: model.llm.family picks the LanguageModel class by name."""
import pytest

from lavis_sevila.models.llm import LanguageModel, family_class, register_family


def test_t5_is_found_by_name_and_imported_lazily():
    from lavis_sevila.models.llm.t5 import T5LanguageModel

    assert family_class("t5") is T5LanguageModel
    assert T5LanguageModel.family == "t5"


def test_an_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model.llm.family 'gpt9'.*'t5'"):
        family_class("gpt9")


def test_a_name_cannot_be_taken_twice():
    class Other(LanguageModel):  # pragma: no cover - never built
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_family("t5")(Other)


def test_the_tiny_model_builds_through_the_registry():
    from conftest import build_tiny

    assert build_tiny().llm.family == "t5"
    with pytest.raises(ValueError, match="unknown model.llm.family"):
        build_tiny(**{"llm": {"family": "nope"}})
