"""What imports without LAVIS or torch, and that registration still happens when LAVIS is used.

Each check runs in a fresh interpreter: this test process has long imported LAVIS.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("lavis", "torch", "transformers")

# python -m MODULE ARGS, run as runpy does, then report which heavy packages got imported
RUN_MODULE = """
import runpy, sys
sys.argv = [{module!r}, *{args!r}]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def python(code: str, timeout: int = 180) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def heavy_imports(module: str, *args: str) -> list[str]:
    out = python(RUN_MODULE.format(module=module, args=list(args), heavy=HEAVY))
    line = [l for l in out.splitlines() if l.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY="):].split(",") if m]


@pytest.mark.parametrize(
    "module,args",
    [
        ("dataset_builders.validate", ["--help"]),
        ("dataset_builders.nextqa", ["--help"]),
        ("dataset_builders.star", ["--help"]),
        ("dataset_builders.how2qa", ["--help"]),
        ("dataset_builders.qvh", ["--help"]),
        ("dataset_builders.synthetic", ["--help"]),
        ("lavis_sevila.tasks.metrics.moment_retrieval", ["--help"]),
        ("lavis_sevila.models", ["list", "--sources-only"]),
    ],
)
def test_command_lines_that_need_neither_lavis_nor_torch(module, args):
    assert heavy_imports(module, *args) == []


def test_validate_checks_a_file_without_lavis(tmp_path):
    records = tmp_path / "empty.jsonl"
    records.write_text("")
    code = RUN_MODULE.format(module="dataset_builders.validate", args=[str(records)], heavy=HEAVY)
    code = code.replace("assert stop.code in (0, None), stop.code", "print('EXIT', stop.code)")
    out = python(code)
    assert "HEAVY=\n" in out + "\n" and "EXIT" in out  # ran (whatever it thinks of an empty file), nothing heavy


def test_light_modules_import_without_lavis_or_torch():
    modules = ["lavis_sevila", "lavis_sevila.data.schema", "lavis_sevila.data.prompts", "lavis_sevila.tasks.metrics.videoqa",
               "lavis_sevila.tasks.metrics.spans", "lavis_sevila.tasks.metrics.moment_retrieval",
               "lavis_sevila.models.pretrained", "lavis_sevila.models.config", "lavis_sevila.utils.progress",
               "dataset_builders.vlep", "dataset_builders.tvqa"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    assert python(code).strip().splitlines()[-1] == "HEAVY="


def test_the_shard_writer_needs_torch_but_not_lavis():
    code = "import sys, dataset_builders.shards\nprint('torch' in sys.modules, 'lavis' in sys.modules)\n"
    assert python(code).strip().splitlines()[-1] == "True False"


def test_import_then_load_model_and_preprocess_registers_on_first_lookup():
    code = (
        "import sys, lavis_sevila\n"
        "assert 'lavis' not in sys.modules and not lavis_sevila.registration.is_registered()\n"
        "from lavis.models import load_model_and_preprocess\n"
        "from lavis.common.registry import Registry, registry\n"
        "assert not lavis_sevila.registration.is_registered()  # importing LAVIS alone does not register\n"
        "model, vis, _ = load_model_and_preprocess('sevila', 'tiny', is_eval=True)\n"
        "from lavis_sevila.models.sevila import SeViLA\n"
        "assert isinstance(model, SeViLA) and set(vis) == {'train', 'eval'}\n"
        "assert lavis_sevila.registration.is_registered()\n"
        "assert registry.get_task_class('videoqa').__name__ == 'VideoQATask'\n"
        "assert registry.get_builder_class('nextqa') is not None and registry.get_runner_class('runner_sevila') is not None\n"
        "assert Registry.get_model_class.__func__.__module__ == 'lavis.common.registry'  # LAVIS's lookups put back\n"
        "print('ok')\n"
    )
    assert python(code).strip().endswith("ok")


def test_lavis_first_then_explicit_register_fills_the_mapping():
    code = (
        "import lavis\n"
        "from lavis.common.registry import registry\n"
        "import lavis_sevila\n"
        "assert 'sevila' not in registry.mapping['model_name_mapping']\n"
        "lavis_sevila.register(); lavis_sevila.register()  # twice: a no-op\n"
        "m = registry.mapping\n"
        "assert 'sevila' in m['model_name_mapping']\n"
        "assert {'videoqa', 'moment_retrieval'} <= set(m['task_name_mapping'])\n"
        "assert {'nextqa', 'star', 'how2qa', 'tvqa', 'vlep', 'qvh', 'sevila_synthetic'} <= set(m['builder_name_mapping'])\n"
        "assert {'sevila_video_eval', 'sevila_video_train'} <= set(m['processor_name_mapping'])\n"
        "assert {'runner_sevila', 'runner_deepspeed'} <= set(m['runner_name_mapping'])\n"
        "print('ok')\n"
    )
    assert python(code).strip().endswith("ok")
