"""Start-up check of the packages LAVIS and SeViLA need, with a message that says what to do.

LAVIS 1.0.2 is installed with ``--no-deps`` (its metadata pins transformers<4.27, which
its code does not need), so pip cannot catch a wrong version for us: this module does.
"""
from __future__ import annotations

import os
import warnings
from importlib import metadata

from packaging.version import Version

# (distribution, lowest working, first known broken, tested) -- first broken None = unknown
REQUIREMENTS: tuple[tuple[str, str, str | None, str], ...] = (
    ("salesforce-lavis", "1.0.2", "1.0.3", "1.0.2"),
    ("transformers", "4.33", "4.47", "4.46.3"),  # 4.56 already lacks what LAVIS imports
    ("torch", "2.1", None, "2.14.1"),
    ("numpy", "1.20", "2.0", "1.26.4"),
)

FIX = (
    "Install the tested set with `make install` (see README), or by hand:\n"
    "  pip install --no-deps salesforce-lavis==1.0.2 && pip install -e .\n"
    "Set LAVIS_SEVILA_SKIP_ENV_CHECK=1 to skip this check."
)


class EnvironmentMismatch(ImportError):
    pass


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def problems() -> tuple[list[str], list[str]]:
    """(errors, notes): errors break lavis-sevila; notes are untested but allowed versions."""
    errors, notes = [], []
    for dist, low, broken, tested in REQUIREMENTS:
        found = _installed(dist)
        if found is None:
            errors.append(f"{dist} is not installed (tested: {tested})")
            continue
        version = Version(found)
        if version < Version(low) or (broken is not None and version >= Version(broken)):
            upper = f", <{broken}" if broken else ""
            errors.append(f"{dist} {found} is installed; lavis-sevila needs >={low}{upper} (tested: {tested})")
        elif version.base_version != Version(tested).base_version:
            notes.append(f"{dist} {found} (tested: {tested})")
    return errors, notes


def check_environment(strict: bool = False) -> None:
    """Raise on a version known to break; warn once about untested versions (raise if strict)."""
    if os.environ.get("LAVIS_SEVILA_SKIP_ENV_CHECK") == "1":
        return
    errors, notes = problems()
    if errors or (strict and notes):
        raise EnvironmentMismatch("lavis-sevila: incompatible packages:\n  - " + "\n  - ".join(errors + notes) + "\n" + FIX)
    if notes:
        warnings.warn("lavis-sevila runs with untested versions: " + "; ".join(notes), stacklevel=3)
