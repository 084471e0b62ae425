"""A real MJPEG-over-HTTP camera on 127.0.0.1 (multipart/x-mixed-replace, as IP cameras and
mjpg-streamer serve it) that a test can make go away, stall, and come back on the same port."""

import http.server
import threading
import time

import cv2
import numpy as np


class MjpegServer:
    """``fps`` flat 64x48 frames a second, pixel value = frame number % 250 + 1.

    ``go_away()``: connections closed and the port closed (a server that died); ``stall()``:
    connections stay open but nothing comes (a hung encoder); ``come_back()``: serving again on
    the same port. ``sent``: frames written so far."""

    def __init__(self, fps: float = 20.0) -> None:
        self.fps, self.sent, self.state = fps, 0, "run"
        self.port = 0
        self._server = None
        self._start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                owner._stream(self.wfile)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server, self.state = server, "run"

    def _stream(self, out) -> None:
        next_at = time.monotonic()
        while self.state != "gone":
            if self.state == "stall":
                time.sleep(0.02)
                continue
            ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), self.sent % 250 + 1, np.uint8))
            head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            try:
                out.write(head + jpeg.tobytes() + b"\r\n")
            except OSError:  # the client went away
                return
            self.sent += 1
            next_at += 1.0 / self.fps
            time.sleep(max(0.0, next_at - time.monotonic()))

    def go_away(self) -> None:
        self.state = "gone"
        server, self._server = self._server, None  # once, whichever thread comes first
        if server is not None:
            server.shutdown()
            server.server_close()

    def stall(self) -> None:
        self.state = "stall"

    def come_back(self) -> None:
        self._start()

    def close(self) -> None:
        self.go_away()
