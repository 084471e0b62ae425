"""The station's web server: a Starlette app served by uvicorn in a background thread.

    GET  /                          the page (static/index.html; assets under /static, no CDN)
    GET  /api/state[?since=N]       counters, yield, fps, latency, score history (with since: the
                                    points after the previous answer's "points"), drift per stream
    GET  /api/frame/<stream>        the newest overlay as JPEG (X-Frame: its frame index); 204: none yet
    GET  /api/gallery/<stream>      newest NG evidence entries; /evidence/<stream>/<file> serves them
    GET  /api/recent/<stream>       recent OK frames (for "missed defect"); /api/ok/<stream>/<i>.jpg
    POST /api/review                {"id": ..., "label": false_alarm|confirmed_defect|missed_defect}

Bound to 127.0.0.1 unless told otherwise. On any other address every request needs the token
printed at start: ``?token=T`` once (the page then keeps it in a cookie) or
``Authorization: Bearer T``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from rd_edge.core.errors import RdEdgeError
from rd_edge.core.optional import import_optional
from rd_edge.core.review import ReviewError

from .state import Station

STATIC = Path(__file__).parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_COOKIE = "rd_station_token"


class StationError(RdEdgeError):
    """The station cannot start: a missing package, a port in use."""


def _need(module: str) -> Any:
    return import_optional(
        module,
        "the operator's station (--station, rd-edge station)",
        "pip install '.[station]' (starlette, uvicorn)",
        StationError,
    )


def build_app(station: Station, token: str | None = None) -> Any:
    """The Starlette application over ``station``; ``token``: required on every request."""
    _need("starlette")
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    no_store = {"Cache-Control": "no-store"}
    # an evidence entry's overlay never changes (a new frame is a new name), nor does a recent OK
    # frame's thumbnail under its URL (?run= tells runs apart): a re-drawn gallery fetches nothing
    keep = {"Cache-Control": "private, max-age=3600, immutable"}

    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", headers=no_store)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def state(request: Request) -> Response:
        try:
            since = int(request.query_params["since"]) if "since" in request.query_params else None
        except ValueError:
            return JSONResponse({"error": "since: expected an integer (the previous answer's points)"}, 400)
        return JSONResponse(station.snapshot(since), headers=no_store)

    async def frame(request: Request) -> Response:
        found = await run_in_threadpool(station.live_jpeg, request.path_params["stream"])
        if found is None:
            return Response(status_code=204, headers=no_store)
        index, data = found
        return Response(data, media_type="image/jpeg", headers={**no_store, "X-Frame": str(index)})

    async def gallery(request: Request) -> Response:
        entries = await run_in_threadpool(station.gallery, request.path_params["stream"])
        return JSONResponse(entries, headers=no_store)

    async def recent(request: Request) -> Response:
        return JSONResponse(
            await run_in_threadpool(station.recent_ok, request.path_params["stream"]), headers=no_store
        )

    async def ok_image(request: Request) -> Response:
        data = await run_in_threadpool(
            station.ok_jpeg, request.path_params["stream"], request.path_params["index"]
        )
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg", headers=keep)

    async def evidence(request: Request) -> Response:
        path = station.evidence_file(request.path_params["stream"], request.path_params["name"])
        if path is None or path.suffix != ".jpg":
            return Response(status_code=404)
        try:  # one read in one worker thread (a FileResponse hops threads per stat, open, read)
            data = await run_in_threadpool(path.read_bytes)
        except OSError:  # removed by the disk budget meanwhile
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg", headers=keep)

    async def mark(request: Request) -> Response:
        try:
            body = await request.json()
            result = await run_in_threadpool(station.mark, str(body["id"]), str(body["label"]))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected JSON {"id": ..., "label": ...}'}, status_code=400)
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(result)

    class TokenGate(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            auth = request.headers.get("authorization", "")
            given = (
                request.query_params.get("token")
                or request.cookies.get(_COOKIE)
                or (auth[7:].strip() if auth.startswith("Bearer ") else "")
            )
            if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
                return Response(
                    "station token required: open the address rd-infer printed (…?token=…)",
                    status_code=401,
                    media_type="text/plain",
                )
            return await call_next(request)

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/api/frame/{stream}", frame),
        Route("/api/gallery/{stream}", gallery),
        Route("/api/recent/{stream}", recent),
        Route("/api/ok/{stream}/{index:int}.jpg", ok_image),
        Route("/evidence/{stream}/{name}", evidence),
        Route("/api/review", mark, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate)] if token is not None else [])


class StationServer:
    """uvicorn serving ``build_app(station)`` in a daemon thread until ``close()``.

    ``host``: 127.0.0.1 (default) serves this machine only, without a token; any other address
    makes a token (``self.token``) that every request must carry (``self.url`` includes it)."""

    def __init__(
        self, station: Station, port: int, host: str = "127.0.0.1", start_timeout: float = 20.0
    ) -> None:
        uvicorn = _need("uvicorn")
        self.token = None if host in LOCAL_HOSTS else secrets.token_urlsafe(18)
        app = build_app(station, self.token)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="rd-station")
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise StationError(
                    f"the station could not serve on {host}:{port} (another program on that "
                    f"port? pick another with --station PORT)"
                )
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def close(self) -> None:
        """Stop serving (open connections get a second to finish). Idempotent."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
