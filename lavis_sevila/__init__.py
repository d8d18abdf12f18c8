"""SeViLA for Salesforce LAVIS.

``import lavis_sevila`` checks the installed versions, then registers the SeViLA model,
tasks, dataset builders, processors and runners in LAVIS's registries.  Python imports a
module once, so importing this package twice registers nothing twice.
"""
import av  # noqa: F401  (before LAVIS pulls in decord: decord's bundled libvpx breaks PyAV's VP8/VP9 encoders)

from lavis_sevila._environment import check_environment

check_environment()

from lavis_sevila import registration  # noqa: E402,F401  (registers everything)

__version__ = "0.1.0"
__all__ = ["check_environment", "__version__"]
