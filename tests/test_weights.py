"""The weight registry and its download cache: names in configs, verified, resumable, atomic.

Offline: file:// URLs and a local HTTP server on 127.0.0.1 (port chosen by the OS) that
serves bytes made here, honours ``Range`` and can cut a response short.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
from pathlib import Path

import pytest
import yaml

from lavis_sevila.models import pretrained
from lavis_sevila.models.pretrained import SOURCES, WeightHashMismatch, WeightSource, resolve_file

CONFIGS = Path(pretrained.__file__).resolve().parent.parent / "configs" / "models"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_SEVILA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def add_source(monkeypatch, location: str, sha256: str | None, name: str = "test_weights") -> WeightSource:
    source = WeightSource(name, "file", location, sha256, len(PAYLOAD), "made by the test", "test bytes")
    monkeypatch.setitem(SOURCES, name, source)
    return source


def test_every_source_is_complete_and_no_hash_is_made_up():
    for name, source in SOURCES.items():
        assert source.name == name and source.kind in ("file", "hub")
        assert source.licence and source.description and source.homepage.startswith("https://")
        assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        if source.kind == "file" and source.location is not None:
            assert source.location.startswith("https://") and source.filename.endswith(".pth")
    expected = {"eva_vit_g", "blip2_flant5xl", "blip2_opt2.7b", "minigpt4_projection", "sevila_pretrained",
                "flan_t5_xl", "opt_2.7b"}
    assert expected <= set(SOURCES)
    assert {s.location for s in SOURCES.values() if s.kind == "hub"} >= {"google/flan-t5-xl", "facebook/opt-2.7b"}


def test_model_configs_name_registered_sources():
    for path in sorted(CONFIGS.glob("sevila_*.yaml")):
        model = yaml.safe_load(path.read_text())["model"]
        starts = model.get("pretrained")
        starts = starts if isinstance(starts, list) else [starts]
        for value in [model["vision"].get("weights"), *starts, *(model.get("finetuned") or [])]:
            if value and value != "???" and not pretrained.is_url(value):  # ???: the user must give a file
                assert value in SOURCES, f"{path.name}: {value!r} is neither a registered source nor a URL"


def test_a_name_downloads_once_verified_and_atomically(tmp_path, monkeypatch, cache):
    src = tmp_path / "served.pth"
    src.write_bytes(PAYLOAD)
    add_source(monkeypatch, src.as_uri(), PAYLOAD_SHA)
    path = resolve_file("test_weights")
    assert path.read_bytes() == PAYLOAD and path.parent == cache / "weights"
    assert not list(path.parent.glob("*.part"))
    src.unlink()
    assert resolve_file("test_weights") == path  # from the cache
    assert resolve_file(src.as_uri()) == path  # the URL of a registered source is the same file


def test_a_wrong_hash_names_the_file_and_both_hashes_and_keeps_nothing(tmp_path, monkeypatch, cache):
    src = tmp_path / "served.pth"
    src.write_bytes(PAYLOAD)
    wrong = "0" * 64
    add_source(monkeypatch, src.as_uri(), wrong)
    with pytest.raises(WeightHashMismatch) as error:
        resolve_file("test_weights")
    message = str(error.value)
    assert src.as_uri() in message and "served.pth" in message and wrong in message and PAYLOAD_SHA in message
    assert not any((cache / "weights").iterdir())  # neither the file nor a .part
    # the registry's hash also applies when the config gives the URL instead of the name
    with pytest.raises(WeightHashMismatch):
        resolve_file(src.as_uri())


def test_names_that_are_not_files_say_what_to_do():
    with pytest.raises(ValueError, match="hub model .*google/flan-t5-xl"):
        resolve_file("flan_t5_xl")
    with pytest.raises(FileNotFoundError, match="no direct download.*github.com/Vision-CAIR"):
        resolve_file("minigpt4_projection")
    with pytest.raises(FileNotFoundError, match="registered names: .*eva_vit_g"):
        resolve_file("eva_vit_gg")


class Server:
    """Serves PAYLOAD at /w.pth; records each request's Range; may cut the next reply short."""

    def __init__(self):
        self.ranges: list[str | None] = []
        self.cut_at: int | None = None
        self.honour_range = True
        self.range_offset = 0  # > 0: answer a resumed request from a different byte than asked
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get("Range")
                outer.ranges.append(wanted)
                start = 0
                if wanted and outer.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1)) - outer.range_offset
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_at is not None:
                    body, outer.cut_at = body[: outer.cut_at], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_interrupted_download_resumes_with_range_and_is_verified(monkeypatch, cache):
    with Server() as server:
        add_source(monkeypatch, server.url, PAYLOAD_SHA)
        server.cut_at = 300_000
        with pytest.raises(FileNotFoundError, match="could not download"):
            resolve_file("test_weights")
        target = pretrained.cached_path(server.url)
        partial = target.with_name(target.name + ".part")
        assert not target.exists() and partial.stat().st_size == 300_000
        path = resolve_file("test_weights")
        assert server.ranges == [None, "bytes=300000-"]
        assert path == target and path.read_bytes() == PAYLOAD and not partial.exists()


def test_a_server_ignoring_range_restarts_cleanly(monkeypatch, cache):
    with Server() as server:
        server.honour_range = False
        add_source(monkeypatch, server.url, PAYLOAD_SHA)
        target = pretrained.cached_path(server.url)
        target.parent.mkdir(parents=True)
        target.with_name(target.name + ".part").write_bytes(b"stale bytes from another attempt")
        assert resolve_file("test_weights").read_bytes() == PAYLOAD
        assert server.ranges == ["bytes=32-"]


def test_a_reply_from_the_wrong_byte_is_not_appended(monkeypatch, cache):
    with Server() as server:
        server.range_offset = 1000
        add_source(monkeypatch, server.url, PAYLOAD_SHA)
        target = pretrained.cached_path(server.url)
        target.parent.mkdir(parents=True)
        target.with_name(target.name + ".part").write_bytes(PAYLOAD[:5000])
        with pytest.raises(FileNotFoundError, match="answered 'bytes 4000-"):
            resolve_file("test_weights")
        assert not any(target.parent.iterdir())  # the .part is gone: the next attempt starts over
        server.range_offset = 0
        assert resolve_file("test_weights").read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished_after_416(monkeypatch, cache):
    with Server() as server:
        add_source(monkeypatch, server.url, PAYLOAD_SHA)
        target = pretrained.cached_path(server.url)
        target.parent.mkdir(parents=True)
        target.with_name(target.name + ".part").write_bytes(PAYLOAD)
        assert resolve_file("test_weights").read_bytes() == PAYLOAD
        assert server.ranges == [f"bytes={len(PAYLOAD)}-", None]  # 416, then a fresh download


def test_list_shows_model_types_sources_hashes_and_the_cache(tmp_path, monkeypatch, cache):
    from lavis_sevila.models.__main__ import list_all

    src = tmp_path / "served.pth"
    src.write_bytes(PAYLOAD)
    add_source(monkeypatch, src.as_uri(), PAYLOAD_SHA)
    cached = resolve_file("test_weights")
    out = io.StringIO()
    list_all(out, with_models=True)
    text = out.getvalue()
    for name in ("tiny", "pretrain_flant5xl", "sevila_tiny.yaml", *SOURCES):
        assert name in text
    assert f"sha256:  {PAYLOAD_SHA}" in text and "sha256:  unknown" in text
    block = text[text.index("test_weights"):]
    assert f"cached:  {cached}" in block.splitlines()[5]
    eva = text[text.index("  eva_vit_g  [file]"):]
    assert eva.splitlines()[5].strip() == "cached:  no"
