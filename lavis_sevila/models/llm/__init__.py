"""Language models behind one narrow interface: embed tokens, score candidate next tokens."""
from lavis_sevila.models.llm.base import LanguageModel, LLMInputs, build_language_model, family_class, register_family

__all__ = ["LanguageModel", "LLMInputs", "build_language_model", "family_class", "register_family"]
