"""Imports every module that registers something in LAVIS's registries.

LAVIS raises when a name is registered twice; each registering module is imported here
exactly once, and Python's module cache keeps a second ``import lavis_sevila`` a no-op.
"""
import lavis.runners  # noqa: F401  (LAVIS's own runners and lr schedulers first)
import lavis.tasks  # noqa: F401
import lavis.common.optims  # noqa: F401  (linear_warmup_cosine_lr, linear_warmup_step_lr)

import lavis_sevila.processors  # noqa: F401  (sevila_video_eval / sevila_video_train)
import lavis_sevila.models  # noqa: F401  (sevila)
import lavis_sevila.datasets  # noqa: F401  (nextqa, star, how2qa, tvqa, vlep, qvh, sevila_synthetic)
import lavis_sevila.tasks  # noqa: F401  (videoqa, moment_retrieval)
import lavis_sevila.runners.runner_sevila  # noqa: F401  (runner_sevila)
import lavis_sevila.runners.runner_deepspeed  # noqa: F401  (runner_deepspeed)
