"""Imports every module that registers something in LAVIS's registries.

LAVIS raises when a name is registered twice; each registering module is imported here
exactly once, and Python's module cache keeps a second ``import lavis_sevila`` a no-op.
"""
import lavis.runners  # noqa: F401  (LAVIS's own runners and lr schedulers first)
import lavis.tasks  # noqa: F401

import lavis_sevila.models  # noqa: F401
