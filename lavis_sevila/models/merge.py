"""One SeViLA checkpoint from a localizer checkpoint and an answerer checkpoint.

The authors' users did this by hand (load two state dicts, copy the ``*_loc`` keys).
Here each role's groups come from its own file only; the shared frozen towers (ViT, LLM)
must be equal in both files or absent from one, because a localizer trained against one
LLM and an answerer trained against another would silently disagree.

    python -m lavis_sevila.models.merge --localizer A.pth --answerer B.pth --output C.pth
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from lavis_sevila.models.checkpoint import CheckpointError, group_of, load_state_file
from lavis_sevila.models.convert import ROLE_PARTS, role_groups
from lavis_sevila.models.stages import ANSWERER, LOCALIZER, ROLES


class MergeError(CheckpointError):
    pass


@dataclass
class MergeReport:
    taken: dict[str, str] = field(default_factory=dict)  # group -> "localizer" | "answerer"
    ignored: dict[str, list[str]] = field(default_factory=dict)  # role -> the other role's groups in its file
    backbone_differs: list[str] = field(default_factory=list)  # towers that differed (allowed)

    def summary(self) -> str:
        parts = [", ".join(f"{g} <- {src}" for g, src in sorted(self.taken.items()))]
        for role, groups in self.ignored.items():
            if groups:
                parts.append(f"not taken from the {role} file: {', '.join(groups)}")
        if self.backbone_differs:
            parts.append(f"backbone groups that differed: {', '.join(self.backbone_differs)}")
        return "; ".join(parts)


def _family_keys(states: Sequence[Mapping[str, torch.Tensor]]) -> tuple[str, str]:
    """(projection group, LLM group) of the one LLM family whose projections the files hold."""
    from lavis_sevila.models.llm.base import FAMILIES, family_class

    groups = {group_of(k) for state in states for k in state}
    proj = ROLE_PARTS.index("proj")
    found = {}
    for family in FAMILIES:
        cls = family_class(family)
        if any(role_groups(role, cls.proj_key)[proj] in groups for role in ROLES):
            found[family] = (cls.proj_key, cls.state_key)
    if len(found) != 1:
        raise MergeError(f"expected the projections of one LLM family across the files, found {sorted(found) or 'none'} "
                         f"(families: {', '.join(f'{f}: {family_class(f).proj_key}' for f in FAMILIES)})")
    return found.popitem()[1]


def merge_states(
    localizer: Mapping[str, torch.Tensor],
    answerer: Mapping[str, torch.Tensor],
    allow_backbone_from: str | None = None,
    names: Mapping[str, str] | None = None,
) -> tuple[dict[str, torch.Tensor], MergeReport]:
    """Localizer groups (``*_loc``) from ``localizer``, answerer groups from ``answerer``.

    A key in neither role nor a backbone group is an error; so is a role whose groups are
    incomplete in its file, or a backbone group that differs between the files unless
    ``allow_backbone_from`` names the file to take it from.
    """
    if allow_backbone_from not in (None, LOCALIZER, ANSWERER):
        raise ValueError(f"allow_backbone_from must be {LOCALIZER!r} or {ANSWERER!r}, got {allow_backbone_from!r}")
    names = dict(names or {LOCALIZER: "localizer file", ANSWERER: "answerer file"})
    files = {LOCALIZER: dict(localizer), ANSWERER: dict(answerer)}
    proj, llm = _family_keys(list(files.values()))
    roles = {role: role_groups(role, proj) for role in ROLES}
    backbone = ("visual_encoder", llm)
    known = set(backbone) | {g for groups in roles.values() for g in groups}
    for role, state in files.items():
        unknown = sorted(k for k in state if group_of(k) not in known)
        if unknown:
            raise MergeError(
                f"{names[role]}: {len(unknown)} key(s) outside the SeViLA layout, e.g. {unknown[:5]} "
                f"(known groups: {sorted(known)})"
            )
    report = MergeReport()
    merged: dict[str, torch.Tensor] = {}
    for role, state in files.items():
        mine = roles[role]
        missing = [g for g in mine if not any(group_of(k) == g for k in state)]
        if missing:
            present = sorted({group_of(k) for k in state})
            raise MergeError(f"{names[role]}: no {role} group(s) {', '.join(missing)}; it holds {present}")
        merged.update({k: v for k, v in state.items() if group_of(k) in mine})
        report.taken.update({g: role for g in mine})
        other = roles[ANSWERER if role == LOCALIZER else LOCALIZER]
        report.ignored[role] = sorted({group_of(k) for k in state if group_of(k) in other})
    _check_twins(merged, roles)
    for group in backbone:
        parts = {role: {k: v for k, v in state.items() if group_of(k) == group} for role, state in files.items()}
        given = [role for role in (LOCALIZER, ANSWERER) if parts[role]]
        if not given:
            continue
        if len(given) == 2:
            difference = _difference(parts[LOCALIZER], parts[ANSWERER])
            if difference:
                if allow_backbone_from is None:
                    raise MergeError(
                        f"{group} differs between the {names[LOCALIZER]} and the {names[ANSWERER]} ({difference}); "
                        "the roles were trained on different backbones. Pass --allow-backbone-from localizer|answerer "
                        "to take it from one file anyway."
                    )
                report.backbone_differs.append(group)
                given = [allow_backbone_from]
        merged.update(parts[given[0]])
        report.taken[group] = given[0] if len(given) == 1 else "both (equal)"
    return merged, report


def _check_twins(merged: Mapping[str, torch.Tensor], roles: Mapping[str, tuple[str, ...]]) -> None:
    """The two roles must have one architecture (same keys and shapes per twin group)."""
    twin = dict(zip(roles[LOCALIZER], roles[ANSWERER]))
    loc = {twin[group_of(k)] + k[len(group_of(k)):]: v.shape for k, v in merged.items() if group_of(k) in twin}
    ans = {k: v.shape for k, v in merged.items() if group_of(k) in roles[ANSWERER]}
    if loc != ans:
        only = sorted(set(loc) ^ set(ans))[:5]
        shapes = [k for k in set(loc) & set(ans) if loc[k] != ans[k]][:5]
        raise MergeError(f"the two roles have different architectures: keys in one role only {only}, shapes differ {shapes}")


def _difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str:
    if set(a) != set(b):
        return f"different keys, e.g. {sorted(set(a) ^ set(b))[:3]}"
    for key in sorted(a):
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            return f"{key}: {tuple(a[key].shape)} {a[key].dtype} vs {tuple(b[key].shape)} {b[key].dtype}"
        if not torch.equal(a[key], b[key]):
            return f"{key} has different values"
    return ""


def merge_files(
    localizer: str | Path, answerer: str | Path, output: str | Path, allow_backbone_from: str | None = None
) -> MergeReport:
    """Read both files (weights-only, checked), merge, write ``{"model", "manifest"}`` atomically."""
    from lavis_sevila.models.convert_hf import write_ours

    merged, report = merge_states(
        load_state_file(localizer),
        load_state_file(answerer),
        allow_backbone_from,
        names={LOCALIZER: f"--localizer {localizer}", ANSWERER: f"--answerer {answerer}"},
    )
    write_ours(merged, output, merged_from={LOCALIZER: str(localizer), ANSWERER: str(answerer)},
               taken=dict(report.taken))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lavis_sevila.models.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--localizer", required=True, help="checkpoint holding the localizer (*_loc groups)")
    parser.add_argument("--answerer", required=True, help="checkpoint holding the answerer")
    parser.add_argument("--output", required=True, help=".pth to write")
    parser.add_argument("--allow-backbone-from", choices=(LOCALIZER, ANSWERER),
                        help="take a ViT/LLM that differs between the files from this one")
    args = parser.parse_args(argv)
    try:
        report = merge_files(args.localizer, args.answerer, args.output, args.allow_backbone_from)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
