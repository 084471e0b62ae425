"""Pipeline test parts: a runner made slow on purpose, numbered frame sources, a list sink."""

import time
from typing import Dict, Iterator, List

import numpy as np

from rd_edge.core.errors import BackendError
from rd_edge.runtime import Detector
from rd_edge.runtime.backends import Runner, load_runner
from rd_edge.runtime.sinks import Sink
from rd_edge.runtime.sources import Source, SourceItem


class DelayedRunner(Runner):
    """The real ONNX Runtime runner behind a fixed delay per call; remembers each batch it saw.

    ``fail_on_black``: a batch holding an all-black frame raises (a stage that fails on one frame).
    """

    def __init__(self, inner: Runner, delay: float = 0.0, fail_on_black: bool = False) -> None:
        self.inner, self.delay, self.fail_on_black = inner, delay, fail_on_black
        self.name, self.metadata = "delayed", inner.metadata
        self.input_names, self.output_names, self.max_batch = (
            inner.input_names,
            inner.output_names,
            inner.max_batch,
        )
        self.batches: List[int] = []

    def infer_impl(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        time.sleep(self.delay)
        image = feed["image"]
        self.batches.append(int(image.shape[0]))
        if self.fail_on_black and (image.reshape(len(image), -1).max(axis=1) == 0).any():
            raise BackendError("delayed: refuses black frames")
        return self.inner.infer_impl(feed)

    def close(self) -> None:
        self.inner.close()


class FrameSource(Source):
    """Numbered frames (pixel value = index % 250 + 1) made on the spot, ``period`` seconds apart.

    ``live=True`` makes it a camera: it never waits for the pipeline. ``black`` indices are all
    zero. ``noise=True``: random pixels instead (JPEG cannot shrink them: sizeable evidence files).
    """

    def __init__(
        self,
        label: str,
        n: int,
        period: float = 0.0,
        live: bool = False,
        black=(),
        size=(20, 30),
        noise: bool = False,
    ) -> None:
        self.kind = "camera" if live else "video"
        super().__init__(label, n, None)
        self.label, self.n, self.period, self.black = label, n, period, set(black)
        self.size, self.noise = tuple(size), noise

    def _items(self) -> Iterator[SourceItem]:
        rng = np.random.default_rng(0)
        for i in range(self.n):
            if self.period:
                time.sleep(self.period)
            if self.noise:
                frame = rng.integers(0, 256, self.size + (3,), dtype=np.uint8)
            else:
                frame = np.full(self.size + (3,), 0 if i in self.black else i % 250 + 1, np.uint8)
            yield SourceItem(f"{self.label}#{i}", f"{self.label}/{i}", frame, None)


class ListSink(Sink):
    def __init__(self) -> None:
        self.results, self.closed = [], False

    def write(self, result) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True

    def by_stream(self, stream: str) -> list:
        return [r for r in self.results if r.stream == stream]


def make_detector(tiny_onnx, batch_size=1, **runner_options) -> Detector:
    return Detector(DelayedRunner(load_runner(tiny_onnx), **runner_options), batch_size=batch_size)
