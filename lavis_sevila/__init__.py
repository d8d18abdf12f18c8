"""SeViLA for Salesforce LAVIS.

``import lavis_sevila`` is light (no LAVIS, no torch): the converters, the schema and the
metrics need neither.  SeViLA's model, tasks, dataset builders, processors and runners
are registered in LAVIS's registries by :func:`register` -- called by
``lavis_sevila.train`` / ``.evaluate`` / ``.pipeline``, and implicitly by the first
registry lookup after ``import lavis_sevila`` (so ``load_model_and_preprocess("sevila",
...)`` works as before).  See :mod:`lavis_sevila.registration`.
"""
import av  # noqa: F401  (before LAVIS pulls in decord: decord's bundled libvpx breaks PyAV's VP8/VP9 encoders)

from lavis_sevila._environment import check_environment
from lavis_sevila.registration import install_hook, register

install_hook()

__version__ = "0.1.0"
__all__ = ["check_environment", "register", "__version__"]
