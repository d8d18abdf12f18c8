"""SeViLA model, its backbone and its checkpoints."""
from lavis_sevila.models.sevila import SeViLA  # noqa: E402  (registers "sevila")

__all__ = ["SeViLA"]
