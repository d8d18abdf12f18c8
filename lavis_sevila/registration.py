"""Registering SeViLA's model, tasks, dataset builders, processors and runners in LAVIS.

Registration imports LAVIS (seconds), so ``import lavis_sevila`` does not do it; it
happens in one of two ways, both at most once per process:

* explicitly, :func:`register` -- what ``lavis_sevila.train`` / ``.evaluate`` /
  ``.pipeline`` call before they read a config;
* implicitly, the first time LAVIS's registry is asked for a class or a list
  (``registry.get_model_class``, ``get_task_class``, ``list_models``, ... -- what
  ``load_model_and_preprocess("sevila", ...)`` and LAVIS's own train flow do) in a
  process that has imported ``lavis_sevila``.  :func:`install_hook` wraps those lookups
  when LAVIS's registry module is loaded (now, or later through an import hook); the
  first lookup registers everything and puts LAVIS's methods back.

What a lookup does not cover: reading ``registry.mapping`` directly, or LAVIS's
``model_zoo`` (built when ``lavis.models`` is imported).  Call :func:`register` first.
LAVIS raises when a name is registered twice; Python's module cache makes a second
:func:`register` a no-op.
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import sys
import threading
from typing import Any

# LAVIS's own runners, tasks and lr schedulers first, then each of our registering modules
REGISTERING_MODULES: tuple[str, ...] = (
    "lavis.runners",
    "lavis.tasks",
    "lavis.common.optims",  # linear_warmup_cosine_lr, linear_warmup_step_lr
    "lavis_sevila.processors.video_processors",  # sevila_video_eval / sevila_video_train
    "lavis_sevila.models.sevila",  # sevila
    "lavis_sevila.datasets.builders",  # nextqa, star, how2qa, tvqa, vlep, qvh, sevila_synthetic
    "lavis_sevila.datasets.image_text",  # sevila_image_text (stage 0), sevila_synthetic_blind
    "lavis_sevila.tasks.videoqa",  # videoqa
    "lavis_sevila.tasks.moment_retrieval",  # moment_retrieval
    "lavis_sevila.runners.runner_sevila",  # runner_sevila
    "lavis_sevila.runners.runner_deepspeed",  # runner_deepspeed
)
REGISTRY_MODULE = "lavis.common.registry"
# the Registry classmethods that read the registry; the first call of one registers
LOOKUPS: tuple[str, ...] = (
    "get_builder_class",
    "get_model_class",
    "get_task_class",
    "get_processor_class",
    "get_lr_scheduler_class",
    "get_runner_class",
    "list_runners",
    "list_models",
    "list_tasks",
    "list_processors",
    "list_lr_schedulers",
    "list_datasets",
)

_lock = threading.RLock()
_state = {"done": False, "running": False}
_originals: dict[str, Any] = {}


def is_registered() -> bool:
    return _state["done"]


def register() -> None:
    """Check the installed versions, then import every registering module (once)."""
    with _lock:
        if _state["done"] or _state["running"]:
            return  # running: a lookup made while our modules import
        _state["running"] = True
        try:
            from lavis_sevila._environment import check_environment

            check_environment()
            for name in REGISTERING_MODULES:
                importlib.import_module(name)
            _state["done"] = True
        finally:
            _state["running"] = False
        _unwrap()


def install_hook() -> None:
    """Make the first registry lookup register SeViLA (see the module docstring)."""
    if _state["done"]:
        return
    module = sys.modules.get(REGISTRY_MODULE)
    if module is not None and hasattr(module, "Registry"):
        _wrap(module.Registry)
    elif not any(isinstance(finder, _RegistryWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegistryWatcher())


def _wrap(registry_cls: type) -> None:
    with _lock:
        if _originals or _state["done"]:
            return
        for name in LOOKUPS:
            original = registry_cls.__dict__.get(name)
            if not isinstance(original, classmethod):
                continue  # another LAVIS version: leave what we do not know alone
            _originals[name] = original
            setattr(registry_cls, name, classmethod(_registering(original.__func__)))
        _originals["__class__"] = registry_cls


def _registering(func):
    @functools.wraps(func)
    def lookup(cls, *args, **kwargs):
        register()
        return func(cls, *args, **kwargs)

    return lookup


def _unwrap() -> None:
    registry_cls = _originals.pop("__class__", None)
    for name, original in list(_originals.items()):
        setattr(registry_cls, name, original)
    _originals.clear()
    for finder in [f for f in sys.meta_path if isinstance(f, _RegistryWatcher)]:
        sys.meta_path.remove(finder)


class _RegistryWatcher(importlib.abc.MetaPathFinder):
    """Finds LAVIS's registry module with the other finders and wraps it once loaded."""

    def find_spec(self, fullname, path, target=None):
        if fullname != REGISTRY_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WrapAfterExec(spec.loader)
                return spec
        return None


class _WrapAfterExec(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _wrap(module.Registry)

    def __getattr__(self, name):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)
