"""What every rd-edge command line shares: user errors print one line, not a traceback."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from ..errors import RdEdgeError


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body; RdEdgeError -> 'error: ...' on stderr and exit 1, Ctrl-C -> 130."""
    try:
        return body()
    except RdEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
