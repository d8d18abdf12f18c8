"""How2QA (VALUE release ``how2qa_{train,val,test_public}_release.jsonl``) -> our jsonl.

4 options ``a0``..``a3``; window from ``ts``; qid ``"HOW2QA_{qid}"`` from the release's
``qid`` where a line has one, else ``"HOW2QA_<16 hex>"``, a hash of ``vid_name``, ``q`` and
``ts`` (stable under reordering or filtering of the file, unlike the authors' line number).
"""
from __future__ import annotations

from dataset_builders.common import ConverterCli, read_jsonl
from dataset_builders.value_qa import SOURCE_FIELDS, make_value_converter

CLI = ConverterCli(
    dataset="how2qa",
    description=__doc__.splitlines()[0],
    read=read_jsonl,
    make_converter=make_value_converter("how2qa", 4, "HOW2QA", qid_required=False),
    source_fields={**SOURCE_FIELDS, "options": "a0..a3"},
)

if __name__ == "__main__":
    CLI.run()
