"""Small videos and a bounded local server for the CLI, renderer and web demo tests."""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from lavis_sevila.video.writer import write_video

FLASH = range(24, 28)  # frames of flash_video that show the red square
QUESTION = "What colour is the square that flashes?"
CHOICES = ["red", "green", "blue"]


def flash_video(path: Path, frames: int = 40, fps: float = 8.0, side: int = 48) -> Path:
    """A dark clip with a red square in a few frames: drawn here, independent of any benchmark."""
    video = np.full((frames, side, side, 3), 20, dtype=np.uint8)
    for i in FLASH:
        video[i, side // 4: 3 * side // 4, side // 4: 3 * side // 4] = (210, 30, 30)
    write_video(path, video, fps=fps)
    return path


@contextlib.contextmanager
def serving(demo) -> Iterator[str]:
    """Serve ``demo`` on 127.0.0.1 at a free port in a thread; yield its URL; always shut down."""
    from lavis_sevila.webdemo import make_server

    server = make_server(demo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
