"""The operator's station: a web page of the line served by rd-infer --station or rd-edge station.

``Station`` keeps what the page shows (state.py), ``StationSink`` feeds it from the pipeline,
``StationServer`` serves it (app.py: Starlette + uvicorn, the ``station`` extra). Review marks
go to a review folder (rd_edge.core.review) that rd-calibrate --review and rd-train --good read.
"""

from .app import StationError, StationServer, build_app
from .state import Station, StationSink

__all__ = ["Station", "StationError", "StationServer", "StationSink", "build_app"]
