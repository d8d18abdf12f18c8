"""TVQA (official ``tvqa_{train,val}.jsonl``, ``tvqa_test_public.jsonl``) -> our jsonl.

5 options ``a0``..``a4``; qid ``"TVQA_{qid}"`` from the release's own ``qid``; window from
``ts``; ``show_name`` and the integer qid kept in ``extra``.
"""
from __future__ import annotations

from dataset_builders.common import ConverterCli, read_jsonl
from dataset_builders.value_qa import SOURCE_FIELDS, make_value_converter

CLI = ConverterCli(
    dataset="tvqa",
    description=__doc__.splitlines()[0],
    read=read_jsonl,
    make_converter=make_value_converter("tvqa", 5, "TVQA", qid_required=True, extra_fields=("show_name",)),
    source_fields={**SOURCE_FIELDS, "options": "a0..a4"},
)

if __name__ == "__main__":
    CLI.run()
