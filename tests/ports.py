"""Free TCP ports on 127.0.0.1 for the servers the tests start (broker, Triton, metrics). Torch-free."""

from __future__ import annotations

import socket
from typing import List


def free_ports(n: int = 1) -> List[int]:
    """``n`` distinct ports that were free a moment ago (all held open together, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
