"""An interactive page for SeViLA on your own video: ``python -m lavis_sevila.webdemo``.

Open the printed address, upload a video (or press "Try the synthetic example"), type a
question and its options, and the page shows the answer with the probability of each option,
the keyframe timestamps and the contact sheet (sampled frames, keyframes framed, the localizer
score curve).  Everything is computed by :mod:`lavis_sevila.answer` and drawn by
:mod:`lavis_sevila.visualize`: the CLI and this page are one code path.

Why the standard library's ``http.server`` and not Gradio or FastAPI: the page is one form and
one answer, for one person on their own machine.  ``http.server`` serves that with no new
dependency, while Gradio brings dozens of packages (FastAPI, uvicorn, httpx, pydantic,
huggingface_hub, front-end bundles) and FastAPI needs uvicorn and python-multipart.  The page is
plain HTML (no JavaScript), so any browser works and the form is easy to test.  The price:
``http.server`` is not hardened for the open internet, so the server binds to 127.0.0.1 by
default and warns when told otherwise; there is no authentication.

Bad uploads never show a traceback: a file that is not a video, a video longer than
``--max-seconds``, an upload larger than ``--max-upload-mb``, an empty question or the wrong
number of options get a message on the page saying what to change (HTTP 400/413).  An
unexpected failure is logged with its traceback on the server and shown as one line.
"""
from __future__ import annotations

import argparse
import base64
import html
import ipaddress
import logging
import re
import tempfile
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lavis_sevila.answer import (
    DEFAULT_FRAMES, MAX_CHOICES, MAX_FRAMES, Explanation, InputError, add_model_arguments, check_question, explain, load_model,
    render, weights_note,
)
from lavis_sevila.data.prompts import option_letter

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 200.0
DEFAULT_MAX_SECONDS = 600.0
FORM_OVERHEAD_BYTES = 64 * 1024  # the text fields and multipart headers around the file
DRAIN_LIMIT_BYTES = 1 << 30  # an oversized body up to this is read and dropped so the browser sees the page

EXAMPLE_QUESTION = "What colour is the circle that appears?"
EXAMPLE_CHOICES = ("red", "green", "blue", "yellow", "magenta")


class UploadError(ValueError):
    """An upload the demo refuses; ``status`` is the HTTP status the page is sent with."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def write_example_video(path: str | Path, fps: float = 8.0) -> Path:
    """A 6-second synthetic clip: a grey square drifts across, a red circle shows for 0.75 s.

    The question :data:`EXAMPLE_QUESTION` is answerable only from those few frames, which is
    the situation the localizer is for.
    """
    from lavis_sevila.video.writer import write_video

    n, side = 48, 128
    frames = np.full((n, side, side, 3), 28, dtype=np.uint8)
    ys, xs = np.mgrid[0:side, 0:side]
    for i in range(n):
        x0 = 8 + i * (side - 40) // n
        frames[i, 84:108, x0:x0 + 24] = 150  # a distractor that is in every frame
        if 30 <= i < 36:
            frames[i][(ys - 44) ** 2 + (xs - 64) ** 2 < 22 ** 2] = (220, 40, 40)
    write_video(path, frames, fps=fps)
    return Path(path)


@dataclass
class FormField:
    value: bytes
    filename: str | None = None  # set for file inputs

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", errors="replace")


def parse_multipart(body: bytes, content_type: str) -> dict[str, FormField]:
    """The fields of a ``multipart/form-data`` body (RFC 7578), by name; a later repeat wins."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not (content_type or "").lower().startswith("multipart/form-data") or boundary is None:
        raise UploadError("the form must be sent as multipart/form-data (use the page's form)")
    fields: dict[str, FormField] = {}
    for part in body.split(b"--" + boundary.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, sep, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise UploadError("the form data is malformed (a part without headers)")
        headers = head.decode("utf-8", errors="replace")
        disposition = next((h for h in headers.split("\r\n") if h.lower().startswith("content-disposition:")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        fields[name.group(1)] = FormField(data.removesuffix(b"\r\n"), filename.group(1) if filename else None)
    return fields


@dataclass
class Demo:
    """What the server holds: one model (used under a lock), the limits, the example video."""

    model: Any
    model_type: str
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6)
    max_seconds: float = DEFAULT_MAX_SECONDS
    default_frames: int = DEFAULT_FRAMES
    lock: threading.Lock = field(default_factory=threading.Lock)
    workdir: tempfile.TemporaryDirectory = field(default_factory=lambda: tempfile.TemporaryDirectory(prefix="sevila_webdemo_"))

    def __post_init__(self) -> None:
        self.example = write_example_video(Path(self.workdir.name) / "synthetic_example.mp4")

    def check_duration(self, path: Path, shown_name: str) -> None:
        """Refuse a video longer than ``max_seconds`` before decoding it (header duration)."""
        from lavis_sevila.video.pyav_reader import declared_duration

        seconds = declared_duration(path)
        if seconds is not None and seconds > self.max_seconds:
            raise UploadError(
                f"{shown_name} is {seconds:.0f} s long; this demo accepts videos up to {self.max_seconds:.0f} s. "
                "Cut the part you are asking about (or start the demo with a larger --max-seconds)."
            )

    def answer(self, fields: dict[str, FormField]) -> tuple[Explanation, str]:
        """Run one form submission; return the explanation and the contact sheet as a data URL."""
        from lavis_sevila.video import VideoReadError

        question = fields.get("question", FormField(b"")).text
        choices = [fields[f"choice{j}"].text for j in range(MAX_CHOICES) if f"choice{j}" in fields]
        frames = _form_int(fields, "frames", self.default_frames)
        keyframes = _form_int(fields, "keyframes", self.model.config.num_keyframes)
        check_question(question, choices, frames, keyframes)  # before touching the upload
        with tempfile.TemporaryDirectory(dir=self.workdir.name) as scratch:
            if fields.get("action", FormField(b"")).text == "example":
                video, name = self.example, "the synthetic example"
                shown = name
            else:
                video, name = self._save_upload(fields.get("video"), Path(scratch))
                shown = repr(name)  # quoted in messages
            try:
                self.check_duration(video, shown)
                with self.lock:  # one model, one matplotlib: one request at a time
                    explanation, clip = explain(self.model, video, question, choices, frames, keyframes,
                                                model_type=self.model_type)
                    explanation.video = name
                    sheet = render(explanation, clip)
            except VideoReadError as error:
                reason = error.reason.replace(f": '{video}'", "").replace(str(video), "the file")  # no server paths
                reason = re.sub(r"\[Errno -?\d+\] ", "", reason)
                raise UploadError(f"{shown} could not be read as a video: {reason}. "
                                  "Upload a video file (mp4, webm, mkv, avi, mov ...).") from error
        return explanation, "data:image/png;base64," + base64.b64encode(sheet.png).decode("ascii")

    def _save_upload(self, upload: FormField | None, scratch: Path) -> tuple[Path, str]:
        """Write the uploaded file into ``scratch``; return its path and the name the user gave it."""
        if upload is None or upload.filename is None or (not upload.filename and not upload.value):
            raise UploadError("choose a video file first, or press \"Try the synthetic example\"")
        name = Path(upload.filename).name or "the upload"
        if not upload.value:
            raise UploadError(f"{name!r} is empty (0 bytes)")
        if len(upload.value) > self.max_upload_bytes:
            raise too_large(len(upload.value), self.max_upload_bytes)
        suffix = Path(upload.filename).suffix.lower()
        path = scratch / ("upload" + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""))
        path.write_bytes(upload.value)
        return path, name


def too_large(size: int, limit: int) -> UploadError:
    return UploadError(
        f"the upload is {size / 1e6:.1f} MB; this demo accepts videos up to {limit / 1e6:.1f} MB. "
        "Upload a shorter or smaller file (or start the demo with a larger --max-upload-mb).",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def _form_int(fields: dict[str, FormField], name: str, default: int) -> int:
    text = fields[name].text.strip() if name in fields else ""
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name} must be a whole number, got {text!r}") from None


# -- the page ------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 1.5em auto; padding: 0 1em; color: #222; }
form { display: grid; grid-template-columns: 9em 1fr; gap: .5em 1em; align-items: center; max-width: 760px; }
input[type=text] { width: 100%; }
.buttons { grid-column: 2; display: flex; gap: 1em; }
.error { background: #fde8e4; border: 1px solid #d9534f; color: #8a1f11; padding: .8em 1em; margin: 1em 0; }
.answer { font-size: 1.3em; margin: .6em 0; }
.bar { background: #9fb8d0; height: .9em; display: inline-block; vertical-align: middle; }
.chosen .bar { background: #ff7f0e; }
.chosen { font-weight: bold; }
td { padding: .15em .6em; }
.note { color: #a03000; }
img { max-width: 100%; border: 1px solid #ddd; margin-top: 1em; }
"""


def _form(values: dict[str, str], demo: Demo) -> str:
    def v(name: str, default: str = "") -> str:
        return html.escape(values.get(name, default), quote=True)

    choice_rows = "".join(
        f'<label for="choice{j}">Option {option_letter(j)}</label>'
        f'<input type="text" id="choice{j}" name="choice{j}" value="{v(f"choice{j}", EXAMPLE_CHOICES[j] if j < len(EXAMPLE_CHOICES) else "")}">'
        for j in range(MAX_CHOICES)
    )
    return f"""
<form method="post" action="/answer" enctype="multipart/form-data">
  <label for="video">Video</label><input type="file" id="video" name="video" accept="video/*">
  <label for="question">Question</label>
  <input type="text" id="question" name="question" value="{v('question', EXAMPLE_QUESTION)}">
  {choice_rows}
  <label for="frames">Frames</label>
  <input type="number" id="frames" name="frames" min="1" max="{MAX_FRAMES}" value="{v('frames', str(demo.default_frames))}">
  <label for="keyframes">Keyframes</label>
  <input type="number" id="keyframes" name="keyframes" min="1" max="{MAX_FRAMES}" value="{v('keyframes', str(demo.model.config.num_keyframes))}">
  <div class="buttons">
    <button type="submit" id="submit" name="action" value="upload">Answer</button>
    <button type="submit" id="example" name="action" value="example">Try the synthetic example</button>
  </div>
</form>
<p>Leave an option empty to use fewer (2 to {MAX_CHOICES}). Uploads up to {demo.max_upload_bytes / 1e6:.0f} MB and
{demo.max_seconds:.0f} s. The synthetic example (<a href="/example.mp4">download it</a>) shows a red circle for 0.75 s of 6.</p>
"""


def _result(explanation: Explanation, image: str) -> str:
    e = explanation
    rows = "".join(
        f'<tr class="{"chosen" if j == e.answer_index else ""}"><td>{option_letter(j)}) {html.escape(choice)}</td>'
        f'<td><span class="bar" style="width:{300 * p:.0f}px"></span></td><td class="p">{p:.1%}</td></tr>'
        for j, (choice, p) in enumerate(zip(e.choices, e.probabilities))
    )
    keys = ", ".join(f"{t:.2f} s (frame #{k})" for k, t in zip(e.keyframes, e.keyframe_times))
    note = (f'<p class="note">Warning: {html.escape(weights_note(e))}. Start the demo with --checkpoint to load '
            "trained weights.</p>" if e.random_groups else "")
    return f"""
<section id="result">
  <h2>Answer</h2>
  <p class="answer" id="answer">{option_letter(e.answer_index)}) {html.escape(e.answer)}
     &mdash; {e.probabilities[e.answer_index]:.1%}</p>
  <p>Question: {html.escape(e.question)} <br>Video: {html.escape(e.video)} ({e.duration:.2f} s, {len(e.frame_times)} frames sampled)</p>
  <table id="probabilities">{rows}</table>
  <p id="keyframe-times">Keyframes: {keys}</p>
  <p>Weights: {html.escape(e.weights)}</p>{note}
  <img id="contact-sheet" alt="contact sheet: sampled frames, keyframes framed, localizer scores" src="{image}">
</section>
"""


def page(demo: Demo, values: dict[str, str] | None = None, error: str = "", result: str = "") -> bytes:
    """The whole page: the form (keeping what was typed), then an error or a result."""
    error_html = f'<div class="error" id="error" role="alert">{html.escape(error)}</div>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SeViLA on your video</title><style>{STYLE}</style></head>
<body>
<h1>SeViLA: which frames answer the question?</h1>
<p>Model: {html.escape(demo.model_type)}. The localizer scores every sampled frame, the top ones become keyframes,
and the answerer picks an option from those keyframes only.</p>
{_form(values or {}, demo)}
{error_html}
{result}
</body></html>"""
    return body.encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    server_version = "SeViLAWebDemo/1"
    demo: Demo  # set by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (http.server's signature)
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, body: bytes, status: HTTPStatus = HTTPStatus.OK, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(page(self.demo))
        elif path == "/example.mp4":
            self._send(self.demo.example.read_bytes(), ctype="video/mp4")
        else:
            self._send(page(self.demo, error=f"no page at {path}"), HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:  # noqa: N802
        values: dict[str, str] = {}
        try:
            if self.path.split("?", 1)[0] != "/answer":
                raise UploadError(f"nothing to post to at {self.path}", HTTPStatus.NOT_FOUND)
            fields = parse_multipart(self._read_body(), self.headers.get("Content-Type", ""))
            values = {name: f.text for name, f in fields.items() if f.filename is None}
            explanation, image = self.demo.answer(fields)
            self._send(page(self.demo, values, result=_result(explanation, image)))
        except UploadError as error:
            self._send(page(self.demo, values, error=str(error)), error.status)
        except InputError as error:
            self._send(page(self.demo, values, error=str(error)), HTTPStatus.BAD_REQUEST)
        except Exception as error:  # never a traceback on the page; the log has it
            logger.exception("answering failed")
            message = f"something went wrong while answering ({type(error).__name__}: {error}); the server log has the details"
            self._send(page(self.demo, values, error=message), HTTPStatus.INTERNAL_SERVER_ERROR)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise UploadError("the upload has no Content-Length; send it with the page's form", HTTPStatus.LENGTH_REQUIRED)
        length = int(length)
        if length > self.demo.max_upload_bytes + FORM_OVERHEAD_BYTES:
            self._drain(length)
            raise too_large(length, self.demo.max_upload_bytes)
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Read and drop an oversized body so the browser gets the page instead of a reset."""
        if length > DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)


def make_server(demo: Demo, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``demo`` (port 0: any free port; read ``server.server_port``)."""
    handler = type("DemoHandler", (Handler,), {"demo": demo})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lavis_sevila.webdemo",
        description="A web page for SeViLA on your own video: upload a video, ask a question with options, see the "
        "answer, the probabilities, the keyframes and the localizer scores (the same output as "
        "python -m lavis_sevila.answer). Real weights: see python -m lavis_sevila.answer --help.",
    )
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="default frames in the form")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longest video accepted")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = load_model(args.model_type, args.checkpoint, args.device, args.seed)
    demo = Demo(model, args.model_type, max_upload_bytes=int(args.max_upload_mb * 1e6),
                max_seconds=args.max_seconds, default_frames=args.frames)
    if not _is_loopback(args.host):
        logger.warning("listening on %s: anyone who can reach it can upload files and use this machine's model "
                       "(no authentication, no TLS)", args.host)
    server = make_server(demo, args.host, args.port)
    stop_on_signals(server)
    print(f"SeViLA web demo ({args.model_type}) on http://{args.host}:{server.server_port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        demo.workdir.cleanup()


def stop_on_signals(server: ThreadingHTTPServer) -> None:
    """Ctrl-C / SIGTERM end ``serve_forever`` between requests instead of raising
    KeyboardInterrupt wherever the main thread happens to be (e.g. inside starting a request
    thread, which can leave the process unable to exit).  ``kill -USR1`` dumps every thread's
    stack to stderr, for a server that seems stuck."""
    import faulthandler
    import signal

    def request_stop(signum: int, frame: Any) -> None:
        logger.info("signal %d: stopping", signum)
        # shutdown() waits for serve_forever to return, so it cannot run on the serving thread
        threading.Thread(target=server.shutdown, name="webdemo-stop", daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    faulthandler.register(signal.SIGUSR1, all_threads=True)


if __name__ == "__main__":
    main()
