"""The pipelined runtime: capture -> preprocess -> inference -> postprocess -> sinks.

    with Detector("model.onnx") as det:
        pipe = Pipeline(det, [open_source("0"), open_source("line.mp4")], sinks=[JsonlSink("r.jsonl")])
        summary = pipe.run()           # blocks; Ctrl-C or pipe.stop() ends it cleanly
        print(summary.text())

Each stage runs in its own thread (one capture thread per source; the sinks in the calling
thread, so an OpenCV window works) and hands work on through small bounded queues, so frames/s
approaches 1 / (slowest stage) instead of 1 / (sum of stages), and memory stays bounded.

- Live sources (camera, GStreamer, RTSP) never wait: when the preprocess stage has not yet taken
  a source's previous frame, that frame is dropped for the newest (counted per source: the
  summary, ``Result.dropped_before`` and gaps in the frame index show it).
- Files, folders and videos never drop: capture waits for room (back-pressure).
- Frames of different sources share inference batches (round robin over the sources).
- Results of each source come out in capture order (one thread per stage, FIFO queues).
- A stage that raises gives the frames it was working on an error result; the run goes on.
- ``stop()`` (Ctrl-C, SIGTERM): capture stops, everything already captured is flushed through
  the sinks, the sinks are closed. A second Ctrl-C abandons what is still queued.

``Pipeline(..., pipelined=False)`` runs the same stage functions one after another in the calling
thread: the sequential loop, for comparison and debugging.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from rd_edge.core.errors import NonFiniteOutputError, RdEdgeError
from rd_edge.core.images import to_bgr_uint8

from .detector import Batch, Detector, Prediction
from .latency import LatencyStats
from .live import Outage
from .sinks.base import Result, Sink, SinkError  # noqa: F401  (SinkError: re-exported)
from .sources import Source, SourceItem

if TYPE_CHECKING:  # the client needs tritonclient; only its type is named here
    from .client import RemoteDetector

STAGES = ("decode", "preprocess", "inference", "postprocess", "sink")
_END = object()  # end-of-stream marker between stages


@dataclass
class StreamStats:
    frames: int = 0
    anomalies: int = 0
    errors: int = 0
    dropped: int = 0


@dataclass
class Summary:
    """What a run did: per-source counts, busy seconds per stage, wall time."""

    streams: Dict[str, StreamStats]
    stage_seconds: Dict[str, float]
    elapsed: float
    pipelined: bool
    interrupted: bool = False
    latency: LatencyStats = field(default_factory=LatencyStats)  # ms per frame, in fixed memory
    sink_notes: List[str] = field(default_factory=list)
    outages: Dict[str, List[Outage]] = field(default_factory=dict)  # live sources: every outage, in order

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.streams.values())

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams.values())

    @property
    def fps(self) -> float:
        return self.frames / max(self.elapsed, 1e-9)

    def stage_shares(self) -> Dict[str, float]:
        """Each stage's share of the busy time (sums to 1)."""
        total = sum(self.stage_seconds.values()) or 1.0
        return {stage: self.stage_seconds.get(stage, 0.0) / total for stage in STAGES}

    def text(self) -> str:
        """The summary rd-infer prints."""
        anomalies = sum(s.anomalies for s in self.streams.values())
        text = f"inputs {self.frames}, anomalous {anomalies}, errors {self.errors}"
        if self.dropped:
            text += f", dropped {self.dropped} (live sources: stale frames skipped for the newest)"
        if self.latency.count:
            lat = self.latency
            why = (
                "stages overlap, so the slowest stage sets the rate"
                if self.pipelined
                else "the latency plus reading inputs and writing outputs"
            )
            text += (
                f"; latency mean {lat.mean:.2f} ms, p99 {lat.percentile(99):.2f} ms per frame "
                f"(preprocess + model + postprocess, its share of a batch); {self.fps:.1f} frames/s "
                f"end to end ({1000.0 / max(self.fps, 1e-9):.1f} ms of wall time per frame: {why})"
            )
        lines = [text]
        if len(self.streams) > 1:
            lines += [
                f"  {name}: frames {s.frames}, anomalous {s.anomalies}, errors {s.errors}, "
                f"dropped {s.dropped}"
                for name, s in self.streams.items()
            ]
        if self.frames:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in self.stage_shares().items())
            lines.append(f"stages ({'pipelined' if self.pipelined else 'sequential'}): {shares}")
        lines += self.sink_notes
        if self.interrupted:
            lines.append("stopped early: frames already captured were processed and written")
        return "\n".join(lines)


@dataclass
class _Frame:
    stream: int  # index into Pipeline.sources
    index: int
    item: SourceItem
    captured_at: float
    decode_s: float
    dropped_before: int = 0


@dataclass
class _Work:
    """A batch on its way: every frame keeps its place; failed ones carry an error."""

    frames: List[_Frame]
    errors: Dict[int, str]  # position in frames -> error
    batch: Optional[Batch] = None  # the frames without error, in order
    good: List[int] = field(default_factory=list)  # positions of the batch's frames
    predictions: List[Prediction] = field(default_factory=list)
    seconds: Dict[str, float] = field(default_factory=dict)  # busy seconds of each stage for the batch


class _Hub:
    """Per-source frame queues behind one condition: capture threads put, the batcher takes.

    A live source keeps only its newest frame (the stale one is dropped and counted); a file
    source keeps up to ``capacity`` frames and makes its capture thread wait for room.
    """

    def __init__(self, live: Sequence[bool], capacity: int) -> None:
        self._cond = threading.Condition()
        self._queues: List[Deque[_Frame]] = [deque() for _ in live]
        self._live = list(live)
        self._open = set(range(len(live)))
        self._capacity = capacity
        self._next = 0  # round-robin start
        self.dropped = [0] * len(live)
        self.stopping = False

    def put(self, frame: _Frame) -> bool:
        """Queue a frame; False when the pipeline is stopping (the frame is not taken)."""
        with self._cond:
            q = self._queues[frame.stream]
            self.dropped[frame.stream] += frame.dropped_before  # lost by the camera before it reached us
            if self._live[frame.stream]:
                # stale: replace it, carry its drop count, trigger requests and the outage it
                # closes over (dropped with it, the outage's end went unrecorded); an error (an
                # outage beginning) is never replaced
                if q and q[-1].item.error is None:
                    stale = q.pop()
                    frame.dropped_before += stale.dropped_before + 1
                    frame.item.triggers = stale.item.triggers + frame.item.triggers
                    if frame.item.outage is None:
                        frame.item.outage = stale.item.outage
                    self.dropped[frame.stream] += 1
            else:
                while len(q) >= self._capacity and not self.stopping:
                    self._cond.wait()
            if self.stopping:
                return False
            q.append(frame)
            self._cond.notify_all()
            return True

    def finish(self, stream: int) -> None:
        with self._cond:
            self._open.discard(stream)
            self._cond.notify_all()

    def stop(self) -> None:
        """Capture ends; frames already queued are still taken."""
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def take(self, limit: int, wait_full: bool) -> Optional[List[_Frame]]:
        """Up to ``limit`` frames, round robin over the sources; None when all are done.

        ``wait_full``: wait for a full batch while any source is still capturing (files);
        otherwise take what is there (live: the freshest frames, no waiting).
        """
        with self._cond:
            while True:
                available = sum(len(q) for q in self._queues)
                done = not self._open or self.stopping
                if available >= limit or (available and (not wait_full or done)):
                    break
                if not available and done:
                    return None
                self._cond.wait()
            taken: List[_Frame] = []
            while len(taken) < limit and any(self._queues):
                q = self._queues[self._next]
                if q:
                    taken.append(q.popleft())
                self._next = (self._next + 1) % len(self._queues)
            self._cond.notify_all()  # room for waiting capture threads
            return taken


class Pipeline:
    """Runs ``sources`` through ``detector`` into ``sinks``; see the module docstring.

    ``batch_size``: frames per inference call (default: the detector's). ``queue_size``: batches
    waiting between two stages. ``on_error``: called in the sink thread with (sink, exception)
    when a sink raises (default: a warning on stderr).
    """

    def __init__(
        self,
        detector: Union[Detector, RemoteDetector],
        sources: Sequence[Source],
        sinks: Sequence[Sink] = (),
        batch_size: Optional[int] = None,
        pipelined: bool = True,
        queue_size: int = 2,
        on_error: Optional[Callable[[Sink, Exception], None]] = None,
    ) -> None:
        if not sources:
            raise ValueError("Pipeline needs at least one source")
        labels = [s.label for s in sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"source labels must be unique, got {labels}")
        self.detector = detector
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.batch_size = min(int(batch_size or detector.batch_size), detector.batch_size)
        self.pipelined = pipelined
        self.queue_size = max(1, int(queue_size))
        self.on_error = on_error or _warn_sink_error
        live = [s.live for s in self.sources]
        self._hub = _Hub(live, capacity=2 * self.batch_size)
        self._wait_full = not any(live)
        self._all_live = all(live)
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._stats = {s.label: StreamStats() for s in self.sources}
        self._stage_seconds = {stage: 0.0 for stage in STAGES}
        self._latency = LatencyStats()
        self._threads: List[threading.Thread] = []
        self._seq: Optional[Any] = None  # sequential mode's iterators and counters

    # --- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the run cleanly: no new frames; what was captured is processed and written.
        Safe from a signal handler and from any thread."""
        self._stop.set()
        self._hub.stop()
        for source in self.sources:
            source.interrupt()  # a live source waiting for a frame or a reconnection stops waiting

    def run(self) -> Summary:
        """Run until every source ends or stop(); closes the sinks; returns the Summary.

        Called from the main thread, Ctrl-C stops cleanly (as stop()); a second Ctrl-C abandons
        the queued work. Runs once.
        """
        started = time.perf_counter()
        try:
            with self._ctrl_c_stops():
                next_work = self._start_threads() if self.pipelined else self._next_sequential
                self._consume(next_work)
        finally:
            stopped_early = self._stop.is_set()
            self.stop()
            for thread in self._threads:  # a capture thread may sit in a camera read: bounded wait
                thread.join(timeout=2.0)
            self._close_sinks()
        elapsed = time.perf_counter() - started
        for i, source in enumerate(self.sources):
            self._stats[source.label].dropped = self._hub.dropped[i]
        notes = [note for note in (s.summary() for s in self.sinks) if note]
        notes += [
            f"warning: {getattr(s, 'shortfall')}" for s in self.sources if getattr(s, "shortfall", None)
        ]
        outages = {s.label: list(getattr(s, "outages", [])) for s in self.sources}
        notes += [f"warning: {label}: {o.text()}" for label, found in outages.items() for o in found]
        return Summary(
            self._stats,
            dict(self._stage_seconds),
            elapsed,
            self.pipelined,
            stopped_early,
            self._latency,
            notes,
            {k: v for k, v in outages.items() if v},
        )

    def _consume(self, next_work: Callable[[], Optional[_Work]]) -> None:
        """Hand every result to the sinks until the end (or until abandoned)."""
        while not self._abandon.is_set():
            work = next_work()
            if work is None:
                return
            for result in self._results(work):
                if self._abandon.is_set():
                    return
                self._deliver(result)

    @contextlib.contextmanager
    def _ctrl_c_stops(self) -> Iterator[None]:
        """While running in the main thread, Ctrl-C calls stop() instead of raising where it
        lands (mid-write, a record could be written twice); a second Ctrl-C abandons the queue."""

        def handler(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                self._abandon.set()
                self._hub.stop()
                return
            print(
                "stopping: finishing the frames already captured (Ctrl-C again to abandon them)",
                file=sys.stderr,
            )
            self.stop()

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C never reaches this thread anyway
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # --- threads ------------------------------------------------------------------------------

    def _start_threads(self) -> Callable[[], Optional[_Work]]:
        """Start the stage threads; returns the reader of the last queue (None at the end)."""
        to_infer: "queue.Queue[Any]" = queue.Queue(self.queue_size)
        to_post: "queue.Queue[Any]" = queue.Queue(self.queue_size)
        to_sink: "queue.Queue[Any]" = queue.Queue(self.queue_size)
        self._threads = [
            threading.Thread(target=self._capture, args=(i,), daemon=True, name=f"rd-capture-{s.label}")
            for i, s in enumerate(self.sources)
        ]
        stages = [
            (
                self._batches(to_infer if self._all_live else None),
                self._preprocess_work,
                to_infer,
                "rd-preprocess",
            ),
            (_drain(to_infer, self._abandon), self._infer_work, to_post, "rd-inference"),
            (_drain(to_post, self._abandon), self._post_work, to_sink, "rd-postprocess"),
        ]
        self._threads += [
            threading.Thread(target=self._stage, args=(inputs, step, out), daemon=True, name=name)
            for inputs, step, out, name in stages
        ]
        for t in self._threads:
            t.start()
        ends = _drain(to_sink, self._abandon)
        return lambda: next(ends, None)

    def _stage(
        self, inputs: Iterator[_Work], step: Callable[[_Work], _Work], out: "queue.Queue[Any]"
    ) -> None:
        """One stage thread: apply ``step`` to each work item, pass it on, then the end marker."""
        try:
            for work in inputs:
                _put(out, step(work), self._abandon)
        finally:
            _put(out, _END, self._abandon)

    def _capture(self, stream: int) -> None:
        """One source's thread: read frames into the hub until the source ends or stop()."""
        items = iter(self.sources[stream])
        index = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                item, ended = self._read(stream, items, index)
                if item is not None and not self._hub.put(
                    _Frame(stream, index, item, time.time(), time.perf_counter() - t0, item.lost_before)
                ):
                    return
                if ended:
                    return
                index += 1
        finally:
            self._hub.finish(stream)

    def _read(
        self, stream: int, items: Iterator[SourceItem], index: int
    ) -> Tuple[Optional[SourceItem], bool]:
        """(next item or None, whether the source ended); a source that raises mid-run ends
        with an error item (its last record) instead of stopping the run."""
        try:
            return next(items), False
        except StopIteration:
            return None, True
        except Exception as exc:  # noqa: BLE001
            source = self.sources[stream]
            return SourceItem(
                f"{source.description}#{index}",
                f"{source.label}/{index}",
                None,
                f"source stopped: {_describe(exc)}",
            ), True

    def _batches(self, ahead: "Optional[queue.Queue[Any]]" = None) -> Iterator[_Work]:
        """Batches from the hub. ``ahead`` (live sources only): the inference queue; frames are
        taken only once it is empty, so the model gets the freshest frames instead of a queue of
        stale ones (a triggered frame waits behind at most the batch being inferred)."""
        while True:
            while (
                ahead is not None
                and not ahead.empty()
                and not (self._stop.is_set() or self._abandon.is_set())
            ):
                time.sleep(0.002)
            frames = self._hub.take(self.batch_size, self._wait_full)
            if frames is None:
                return
            yield _Work(frames, {})

    # --- sequential ---------------------------------------------------------------------------

    def _next_sequential(self) -> Optional[_Work]:
        """The same steps, one after another in this thread; sources read round robin."""
        if self._seq is None:
            self._seq = (
                [iter(s) for s in self.sources],
                [0] * len(self.sources),
                list(range(len(self.sources))),
            )
        iters, counts, active = self._seq
        while active and not self._stop.is_set():
            frames: List[_Frame] = []
            for stream in list(active):
                if len(frames) >= self.batch_size:
                    break
                t0 = time.perf_counter()
                item, ended = self._read(stream, iters[stream], counts[stream])
                if ended:
                    active.remove(stream)
                if item is not None:
                    frames.append(
                        _Frame(
                            stream,
                            counts[stream],
                            item,
                            time.time(),
                            time.perf_counter() - t0,
                            item.lost_before,
                        )
                    )
                    counts[stream] += 1
            if frames:
                return self._post_work(self._infer_work(self._preprocess_work(_Work(frames, {}))))
        return None

    # --- the steps ----------------------------------------------------------------------------

    def _preprocess_work(self, work: _Work) -> _Work:
        """Frames without a read error -> one Batch; a frame that cannot be converted gets its error
        (alone: the others of its batch go on)."""
        t0 = time.perf_counter()
        for i, f in enumerate(work.frames):
            if f.item.frame is None:
                work.errors[i] = f.item.error or "no frame"
                continue
            try:
                f.item.frame = to_bgr_uint8(f.item.frame)  # a no-op for the sources' BGR uint8 frames
                work.good.append(i)
            except Exception as exc:  # noqa: BLE001
                work.errors[i] = _describe(exc)
        if work.good:
            work.batch = self._guard(work, lambda: self.detector.preprocess(self._frames_of(work)))
        work.seconds["preprocess"] = time.perf_counter() - t0
        return work

    @staticmethod
    def _frames_of(work: _Work) -> List[np.ndarray]:
        return [frame for i in work.good if (frame := work.frames[i].item.frame) is not None]  # good: all

    def _infer_work(self, work: _Work) -> _Work:
        t0 = time.perf_counter()
        batch = work.batch
        if batch is not None:
            work.batch = self._guard(work, lambda: self.detector.infer(batch))
        work.seconds["inference"] = time.perf_counter() - t0
        return work

    def _post_work(self, work: _Work) -> _Work:
        t0 = time.perf_counter()
        batch = work.batch
        if batch is not None:
            work.predictions = self._guard(work, lambda: self.detector.postprocess(batch)) or []
        work.seconds["postprocess"] = time.perf_counter() - t0
        return work

    def _guard(self, work: _Work, step: Callable[[], Any]) -> Any:
        """Run a step over the batch; if it raises, its frames get the error and the batch ends."""
        try:
            return step()
        except Exception as exc:  # noqa: BLE001  one bad batch must not stop the line
            message = _describe(exc)
            for i in work.good:
                work.errors.setdefault(i, message)
            work.batch = None
            return None

    def _results(self, work: _Work) -> Iterator[Result]:
        """One Result per frame, in order, with its share of each stage's batch time."""
        by_position = dict(zip(work.good, work.predictions))  # empty when a batch step failed
        shares = {k: v / max(len(work.frames), 1) for k, v in work.seconds.items()}
        for i, f in enumerate(work.frames):
            prediction = None if i in work.errors else by_position.get(i)
            if prediction is None and i not in work.errors:  # postprocess: None = non-finite outputs
                work.errors[i] = NonFiniteOutputError.FRAME_ERROR
            seconds = {"decode": f.decode_s, **shares}
            yield Result(
                self.sources[f.stream].label,
                f.index,
                f.item,
                prediction,
                work.errors.get(i),
                f.captured_at,
                f.dropped_before,
                seconds,
            )

    # --- sinks --------------------------------------------------------------------------------

    def _deliver(self, result: Result) -> None:
        """Every sink gets the result; a sink that raises is reported, the others still run."""
        t0 = time.perf_counter()
        result.seconds["sink"] = 0.0
        for sink in self.sinks:
            try:
                sink.write(result)
            except Exception as exc:  # noqa: BLE001
                self.on_error(sink, exc)
            result.seconds["sink"] = time.perf_counter() - t0  # later sinks (metrics) see the time so far
        self._count(result)

    def _count(self, result: Result) -> None:
        stats = self._stats[result.stream]
        stats.frames += 1
        for stage, seconds in result.seconds.items():
            self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + seconds
        if result.prediction is None or result.extra.get("evidence_error"):
            stats.errors += 1
        if result.prediction is not None:
            stats.anomalies += int(result.prediction.is_anomalous)
            self._latency.add(result.prediction.timings["total_ms"])

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                self.on_error(sink, exc)


def _drain(q: "queue.Queue[Any]", abandon: threading.Event) -> Iterator[Any]:
    """Items of a stage queue until the end marker (or until abandoned)."""
    while not abandon.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item


def _put(q: "queue.Queue[Any]", item: Any, abandon: threading.Event) -> None:
    """Blocking put that gives up once the run is abandoned (nobody reads any more)."""
    while not abandon.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _describe(exc: Exception) -> str:
    """An error message for a record: RdEdgeErrors say it all; others get their type."""
    text = str(exc).strip()
    return text if isinstance(exc, RdEdgeError) and text else f"{type(exc).__name__}: {text}"


def _warn_sink_error(sink: Sink, exc: Exception) -> None:
    print(f"warning: {sink.name}: {_describe(exc)}", file=sys.stderr)
