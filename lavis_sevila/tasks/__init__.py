"""SeViLA tasks for LAVIS: ``videoqa`` and ``moment_retrieval`` (importing registers them)."""
from lavis_sevila.tasks.moment_retrieval import MomentRetrievalTask
from lavis_sevila.tasks.videoqa import VideoQATask

__all__ = ["MomentRetrievalTask", "VideoQATask"]
