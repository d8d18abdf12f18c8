"""The web demo at the HTTP level: answers, and a clear message (never a traceback) for bad uploads."""
import re
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from conftest import build_tiny
from lavis_sevila.webdemo import Demo, parse_multipart
from webdemo_helpers import CHOICES, QUESTION, flash_video, serving


@pytest.fixture(scope="module")
def demo():
    demo = Demo(build_tiny(seed=0), "tiny", max_upload_bytes=200_000, max_seconds=20)
    yield demo
    demo.workdir.cleanup()


@pytest.fixture(scope="module")
def url(demo):
    with serving(demo) as address:
        yield address


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return flash_video(tmp_path_factory.mktemp("web") / "flash.mp4")


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post(url, fields, files=None):
    body, ctype = multipart(fields, files or {})
    request = urllib.request.Request(url + "/answer", data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def form(action="upload", question=QUESTION, choices=CHOICES, **extra):
    fields = {"action": action, "question": question, **{f"choice{j}": c for j, c in enumerate(choices)}}
    fields.update(extra)
    return fields


def error_text(page: str) -> str:
    match = re.search(r'<div class="error" id="error" role="alert">(.*?)</div>', page, re.S)
    assert match, page[:500]
    assert "Traceback" not in page and 'File "' not in page
    return match.group(1)


def test_the_page_offers_a_form_and_the_synthetic_example(url):
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200 and 'enctype="multipart/form-data"' in page and 'type="file"' in page
    assert 'id="example"' in page
    with urllib.request.urlopen(url + "/example.mp4", timeout=30) as response:
        assert response.headers["Content-Type"] == "video/mp4" and len(response.read()) > 1000


def test_an_uploaded_video_is_answered_with_the_same_result_as_the_api(url, video, demo):
    status, page = post(url, form(frames="16", keyframes="3"), {"video": ("flash.mp4", video.read_bytes())})
    assert status == 200, page[:500]
    expected = build_tiny(seed=0).answer(str(video), QUESTION, CHOICES, num_keyframes=3, num_frames=16)
    letter = "ABC"[expected.index]
    assert re.search(rf'id="answer">{letter}\) {CHOICES[expected.index]}\s+&mdash; {100 * expected.probabilities[expected.index]:.1f}%', page)
    shown = [float(p) for p in re.findall(r'<td class="p">([0-9.]+)%</td>', page)]
    assert np.allclose(shown, [100 * p for p in expected.probabilities], atol=0.051)
    keys = re.search(r'id="keyframe-times">Keyframes: (.*?)</p>', page).group(1)
    assert [int(k) for k in re.findall(r"frame #(\d+)", keys)] == expected.keyframes
    assert re.search(r'<img id="contact-sheet"[^>]* src="data:image/png;base64,iVBOR', page)  # a PNG inline
    assert "random weights" in page
    assert 'value="What colour is the square that flashes?"' in page  # the form keeps what was typed


def test_the_synthetic_example_needs_no_upload(url):
    status, page = post(url, form(action="example", question="What colour is the circle that appears?",
                                  choices=["red", "green", "blue", "yellow", "magenta"]))
    assert status == 200 and 'id="answer">' in page and "the synthetic example" in page


@pytest.mark.parametrize("name, data, message", [
    ("notes.txt", b"these are my notes, not a video\n" * 20, "'notes.txt' could not be read as a video"),
    ("empty.mp4", b"", "'empty.mp4' is empty"),
])
def test_a_file_that_is_not_a_video_gets_a_message(url, name, data, message):
    status, page = post(url, form(), {"video": (name, data)})
    assert status == 400
    text = error_text(page)
    assert message.replace("'", "&#x27;") in text
    assert "/tmp" not in text  # no server paths either


@pytest.mark.parametrize("excess", [100_000, 1_000])  # refused from Content-Length / from the file part's size
def test_a_too_large_upload_gets_a_message(url, demo, excess):
    status, page = post(url, form(), {"video": ("big.mp4", bytes(demo.max_upload_bytes + excess))})
    assert status == 413
    assert "accepts videos up to 0.2 MB" in error_text(page)


def test_a_too_long_video_gets_a_message(url, tmp_path):
    long_video = flash_video(tmp_path / "long.mp4", frames=200, fps=8.0, side=16)  # 25 s > max_seconds=20
    status, page = post(url, form(), {"video": ("long.mp4", long_video.read_bytes())})
    assert status == 400
    assert "&#x27;long.mp4&#x27; is 25 s long; this demo accepts videos up to 20 s" in error_text(page)


@pytest.mark.parametrize("change, message", [
    (dict(question=""), "the question is empty"),
    (dict(choices=["red"]), "give 2 to 5 non-empty choices, got 1"),
    (dict(frames="lots"), "frames must be a whole number"),
    (dict(frames="4", keyframes="9"), "keyframes must be between 1 and the number of frames (4)"),
])
def test_bad_form_values_get_a_message(url, video, change, message):
    status, page = post(url, form(**change), {"video": ("flash.mp4", video.read_bytes())})
    assert status == 400 and message in error_text(page)


def test_no_file_chosen_gets_a_message(url):
    status, page = post(url, form(), {"video": ("", b"")})
    assert status == 400 and "choose a video file first" in error_text(page)


def test_unknown_paths_are_404_pages(url):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url + "/nope", timeout=30)
    assert error.value.code == 404


def test_multipart_parsing_keeps_binary_file_bytes_exactly():
    data = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n\r\n"
    body, ctype = multipart({"question": "q?"}, {"video": ("v.bin", data)})
    fields = parse_multipart(body, ctype)
    assert fields["video"].value == data and fields["video"].filename == "v.bin"
    assert fields["question"].text == "q?" and fields["question"].filename is None


@pytest.mark.timeout(180)  # bounds the readline below if the server never starts
def test_the_entry_point_serves_on_127_0_0_1_at_a_free_port(tmp_path):
    """``python -m lavis_sevila.webdemo --port 0``: prints its address, serves the page, stops on SIGINT."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "TOKENIZERS_PARALLELISM": "false"}
    log = open(tmp_path / "webdemo.log", "w")  # a file, not a pipe nobody reads (a full pipe blocks the server)
    process = subprocess.Popen([sys.executable, "-m", "lavis_sevila.webdemo", "--port", "0"], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()  # the first stdout line is the address (logs go to stderr)
        match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        with urllib.request.urlopen(match.group(1), timeout=60) as response:
            assert response.status == 200 and "SeViLA" in response.read().decode()
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:  # say where it is stuck: every thread's stack
            process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            process.kill()
            pytest.fail("the web demo did not stop within 60 s of SIGINT; its log and threads:\n"
                        + (tmp_path / "webdemo.log").read_text())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()
        process.stdout.close()
