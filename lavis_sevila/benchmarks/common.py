"""What the speed benchmarks share: model shapes, synthetic inputs, timing, memory, tables.

The shapes are random-weight SeViLAs built from ``sevila_tiny.yaml`` with overrides, so the
benchmarks run offline; ``medium`` is the issue's shape (ViT 256x4 @224 px, Q-Former 256x2
with 32 queries, T5 256 wide with 4+4 layers) and keeps the builtin word-level tokenizer.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "medium": {
        "vision.img_size": 224, "vision.patch_size": 14, "vision.embed_dim": 256, "vision.depth": 4,
        "vision.num_heads": 4, "vision.mlp_ratio": 4.0,
        "qformer.hidden_size": 256, "qformer.num_hidden_layers": 2, "qformer.num_attention_heads": 4,
        "qformer.intermediate_size": 1024, "qformer.num_query_token": 32,
        "llm.config.d_model": 256, "llm.config.d_kv": 64, "llm.config.d_ff": 1024, "llm.config.num_layers": 4,
        "llm.config.num_decoder_layers": 4, "llm.config.num_heads": 4,
    },
    # the paper's sizes (ViT-g/14, BERT-base Q-Former, Flan-T5-XL; fp16 ViT, bf16 T5), random
    # weights: for a GPU (``--device cuda``); the tiny tokenizer, with T5's 32128-row vocabulary
    "full": {
        "vision.img_size": 224, "vision.patch_size": 14, "vision.embed_dim": 1408, "vision.depth": 39,
        "vision.num_heads": 16, "vision.mlp_ratio": 4.3637, "vision.precision": "fp16",
        "qformer.hidden_size": 768, "qformer.num_hidden_layers": 12, "qformer.num_attention_heads": 12,
        "qformer.intermediate_size": 3072, "qformer.num_query_token": 32, "qformer.initializer_range": 0.02,
        "qformer.max_position_embeddings": 512,
        "llm.config.d_model": 2048, "llm.config.d_kv": 64, "llm.config.d_ff": 5120, "llm.config.num_layers": 24,
        "llm.config.num_decoder_layers": 24, "llm.config.num_heads": 32, "llm.config.vocab_size": 32128,
        "llm.config.relative_attention_num_buckets": 32, "llm.config.relative_attention_max_distance": 128,
        "llm.dtype": "bf16",
    },
}

WORDS = ("red green blue yellow circle square triangle left right moves appears first last "
         "what which when where does the object after before").split()


def build_model(shape: str, seed: int = 0, device: str = "cpu", **overrides: Any):
    from lavis_sevila.models import SeViLA

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPES)}")
    torch.manual_seed(seed)
    return SeViLA.from_model_type("tiny", **{**SHAPES[shape], **overrides}).eval().to(device)


def questions(count: int, seed: int) -> list[tuple[str, list[str], int]]:
    """``count`` distinct multiple-choice questions with five options (seeded)."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda n: " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (n,), generator=g))  # noqa: E731
    return [(f"{pick(6)} {i}?", [pick(2) for _ in range(5)], int(torch.randint(5, (1,), generator=g)))
            for i in range(count)]


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc), so each path's peak starts low."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms from /proc."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> "PeakRSS":
        trim_heap()
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def time_interleaved(
    paths: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Run every path once to warm up (optional), then ``repeats`` rounds a, b, c, a, b, c, ...

    Interleaving makes the paths share the machine's load alike, so their ratios survive a
    busy machine better than their absolute times.  Returns the times, each path's peak
    RSS growth (MiB, from its first run) and each path's last output.
    """
    times: dict[str, list[float]] = {name: [] for name in paths}
    peak: dict[str, float] = {}
    out: dict[str, Any] = {}
    for round_ in range(repeats + int(warmup)):
        for name, run in paths.items():
            with PeakRSS() if round_ == 0 else contextlib.nullcontext() as memory:
                began = time.perf_counter()
                out[name] = run()
                took = time.perf_counter() - began
            if round_ == 0:
                peak[name] = memory.mib
            if round_ >= int(warmup):
                times[name].append(took)
    return times, peak, out


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.3f} s ({min(values):.3f}-{max(values):.3f})"


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if torch.cuda.is_available():
        load += f"; GPU {torch.cuda.get_device_name()}"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, load average (1, 5, 15 min) {load}")


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in wanted if f in flags) or "none of avx512f/avx512_bf16/amx_bf16"


def write_block(path: Path, name: str, text: str) -> None:
    """Replace the ``name`` block of a markdown file (between markers) with ``text``, atomically."""
    begin, end = f"<!-- {name}:begin (generated) -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block + "\n"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(new)
    os.replace(partial, path)


def benchmark_parser(description: str, repeats: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark here shares (shapes, sizes, repeats, threads, markdown)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shapes", nargs="+", default=["tiny", "medium"])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--no-warmup", action="store_true", help="time the first run too (long shapes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the full-size shape")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table into this file's block")
    return parser


def start(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and print the machine, before anything is timed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"start: {machine()}", flush=True)


def finish(text: str, args: argparse.Namespace, module: str, block: str, argv: Sequence[str] | None) -> None:
    """Print the table and, with ``--markdown``, write it with the command that made it."""
    print(text)
    if args.markdown:
        command = " ".join([f"python -m lavis_sevila.benchmarks.{module}", *(sys.argv[1:] if argv is None else argv)])
        write_block(args.markdown, block, f"Command: `{command}`\n\n{text}")
