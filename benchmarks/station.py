#!/usr/bin/env python
"""The operator's station measured on demo data: its cost, drift over time, a review round, screenshots.

    python benchmarks/station.py line OUT                      # demo line videos: stable, drift, fresh
    python benchmarks/station.py cost MODEL VIDEO [--rounds 3]  # CPU, frames/s: no station / station / page open
    python benchmarks/station.py drift MODEL OUT                # KS over time, stable vs drift (+ PNG)
    python benchmarks/station.py review MODEL DATA OUT          # mark false alarms, rd-calibrate --review
    python benchmarks/station.py screenshots MODEL OUT PNG_PREFIX

MODEL has a thresholds.json beside it (rd-calibrate). ``line`` renders new demo frames (seeds the
dataset never used): ``stable.avi`` good parts with a defect every 15th frame, ``drift.avi`` the
same with the lighting ramping up 40 % over its second half, ``fresh.avi`` good parts under
slightly brighter light (gain 1.15) with a defect every 10th frame, the line the review round
learns from. Each rd-infer run is its own process; ``cost`` interleaves the conditions
(A B C, A B C, ...) so a shared host's drift hits them alike. Chromium is the same headless
browser the page tests drive (tests/runtime/browser.py), on this machine: its CPU counts.
``cost`` also reads rd-infer's CPU per thread from /proc (Linux; a sitecustomize on the child's
PYTHONPATH gives Python's thread names to the OS): the web server's threads' share is the
station's own cost, which the whole process's CPU time on a shared host is too noisy to show.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rdbench

FPS = 10
N_FRAMES = 300


def _frames(n: int, seed: int, gains: np.ndarray, defect_every: int) -> List[np.ndarray]:
    from rd_edge.data.synthetic import DEMO_DEFECTS, render_demo_image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = DEMO_DEFECTS[i % len(DEMO_DEFECTS)] if i % defect_every == defect_every - 1 else "good"
        image = render_demo_image("weave", kind, 256, rng).image.astype(np.float32)
        out.append(np.clip(image * gains[i], 0, 255).astype(np.uint8))
    return out


def _write(path: Path, frames: List[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def line(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ramp = np.concatenate([np.ones(N_FRAMES // 2), np.linspace(1.0, 1.4, N_FRAMES - N_FRAMES // 2)])
    _write(out / "stable.avi", _frames(N_FRAMES, 1001, np.ones(N_FRAMES), 15))
    _write(out / "drift.avi", _frames(N_FRAMES, 1002, ramp, 15))
    _write(out / "fresh.avi", _frames(200, 1003, np.full(200, 1.15), 10))
    _write(out / "fresh_test.avi", _frames(200, 1004, np.full(200, 1.15), 10))
    print(
        f"wrote {out}/stable.avi, drift.avi ({N_FRAMES} frames), fresh.avi, fresh_test.avi (200) at {FPS} fps"
    )


# --- running rd-infer --------------------------------------------------------------------------


def _infer(
    model: Path, sources: List[str], extra: List[str], log: Path, env: Optional[Dict[str, str]] = None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rd_edge.runtime.cli", str(model), *sources, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)  # noqa: SIM115


# Names each Python thread at the OS level (prctl PR_SET_NAME, 15 characters), so /proc tells the
# station's threads (rd-station: uvicorn's loop; "AnyIO worker th...": its handlers) from the rest.
_THREAD_NAMES = """
import ctypes, threading
_libc, _inner = ctypes.CDLL(None), threading.Thread._bootstrap_inner
def _named(self):
    try:
        _libc.prctl(15, self.name[:15].encode(), 0, 0, 0)
    except Exception:
        pass
    return _inner(self)
threading.Thread._bootstrap_inner = _named
"""
STATION_THREADS = ("rd-station", "AnyIO worker th")


def _named_env(folder: Path) -> Dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_THREAD_NAMES)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(folder), env.get("PYTHONPATH")) if x)
    return env


def _threads(pid: int, seen: Dict[int, Any]) -> None:
    """Record (name, user + system seconds) of each thread of ``pid`` into ``seen`` (by thread id:
    the last reading of a thread that has ended stays)."""
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)


def _process_cpu(pid: int) -> Optional[float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except OSError:
        return 0


def _wait_measured(
    proc: subprocess.Popen, timeout: float, records: Path, warm: int
) -> Tuple[Dict[str, float], Optional[float]]:
    """Wait for ``proc``, reading its threads' CPU every 0.2 s: (seconds per thread name, the
    steady CPU ms per frame: from the first reading with ``warm`` records written in ``records``
    to the last one before the end, start-up and first requests left out; None if too short)."""
    seen: Dict[int, Any] = {}
    first = last = None
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("rd-infer did not finish in time")
        _threads(proc.pid, seen)
        cpu, n = _process_cpu(proc.pid), _lines(records)
        if cpu is not None and n >= warm:
            first = first or (cpu, n)
            last = (cpu, n) if last is None or n > last[1] else last  # not the shutdown after it
        time.sleep(0.2)
    per_name: Dict[str, float] = {}
    for name, seconds in seen.values():
        per_name[name] = per_name.get(name, 0.0) + seconds
    steady = None
    if first and last and last[1] - first[1] >= warm:
        steady = 1000.0 * (last[0] - first[0]) / (last[1] - first[1])
    return per_name, steady


def _browser_cpu(driver: Any) -> float:
    """User + system seconds of the browser's processes so far (chromedriver's descendants)."""
    import psutil

    total = 0.0
    for p in psutil.Process(driver.service.process.pid).children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _wait_line(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1) if found.groups() else found.group(0)
        if proc.poll() is not None:
            raise SystemExit(f"rd-infer ended: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {pattern!r} in {log}")


def _fps(log: Path) -> float:
    found = re.search(r"([\d.]+) frames/s end to end", log.read_text())
    if not found:
        raise SystemExit(f"no summary in {log}: {log.read_text()[-2000:]}")
    return float(found.group(1))


def cost(
    model: Path, video: Path, rounds: int, work: Path, port: int, more: Optional[List[str]] = None
) -> Dict[str, Any]:
    """Frames/s and CPU time per frame of rd-infer on ``video``: without the station, with it but
    no page, with the page open in headless Chromium (5 live images/s), interleaved over
    ``rounds``. CPU ms per frame (user + system of the rd-infer process, startup included) is the
    steadier figure on a shared host; frames/s also feels the other programs. The steady figure
    leaves out start-up (imports, the server's, the page's first requests: one-off costs that a
    300-frame run charges to few frames) by reading rd-infer's CPU from /proc from the first fifth
    of the records on. ``more``: further rd-infer arguments for every run (e.g. --no-spinning)."""
    from rdbench.browser import chromium

    work.mkdir(parents=True, exist_ok=True)
    import resource

    capture = cv2.VideoCapture(str(video))
    warm = max(30, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) // 5)  # start-up, the page's first requests
    capture.release()

    results: Dict[str, List[float]] = {"no station": [], "station, no page": [], "station, page open": []}
    cpu: Dict[str, List[float]] = {name: [] for name in results}  # rd-infer's CPU ms per frame
    own: Dict[str, List[float]] = {name: [] for name in results}  # of it, the station's threads
    steady: Dict[str, List[float]] = {name: [] for name in results}  # CPU ms/frame past start-up
    browser: Dict[str, List[float]] = {name: [] for name in results}  # Chromium's CPU ms per frame
    env = _named_env(work / "thread_names")
    loads = [os.getloadavg()[0]]
    with chromium(1280, 800) as driver:
        for r in range(rounds):
            for name in results:
                log = work / f"{name.replace(' ', '_').replace(',', '')}_{r}.txt"
                extra = [
                    "--evidence",
                    str(work / f"ev_{r}"),
                    *(more or []),
                ]  # not --quiet: the summary has the rate
                if name != "no station":
                    extra += ["--station", str(port)]
                (work / "r.jsonl").unlink(missing_ok=True)  # the steady figure counts its lines
                proc = _infer(model, [str(video)], extra + ["--json", str(work / "r.jsonl")], log, env)
                if name == "station, page open":
                    url = _wait_line(log, r"station: (\S+)", proc)
                    driver.get(url)
                else:
                    driver.get("about:blank")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                chrome_before = _browser_cpu(driver)
                # reaped here: its CPU time lands in RUSAGE_CHILDREN
                threads, steady_ms = _wait_measured(proc, 600, work / "r.jsonl", warm)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                browser_s = _browser_cpu(driver) - chrome_before
                frames = len((work / "r.jsonl").read_text().splitlines())
                used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                results[name].append(_fps(log))
                cpu[name].append(1000.0 * used / frames)
                own[name].append(1000.0 * sum(threads.get(t, 0.0) for t in STATION_THREADS) / frames)
                steady[name].append(float("nan") if steady_ms is None else steady_ms)
                browser[name].append(1000.0 * browser_s / frames)
                loads.append(os.getloadavg()[0])
                print(
                    f"round {r + 1} {name}: {results[name][-1]:.2f} frames/s, {cpu[name][-1]:.1f} CPU "
                    f"ms/frame ({steady[name][-1]:.1f} past start-up; station threads "
                    f"{own[name][-1]:.2f}, Chromium {browser[name][-1]:.1f}), load {loads[-1]:.1f}",
                    flush=True,
                )
    base = np.array(results["no station"])
    base_cpu = np.array(cpu["no station"])
    base_steady = np.array(steady["no station"])
    summary = {
        name: {
            "fps": v,
            "ratio_to_no_station": [round(x / b, 4) for x, b in zip(v, base)],
            "cpu_ms_per_frame": [round(x, 2) for x in cpu[name]],
            "cpu_ratio_to_no_station": [round(x / b, 4) for x, b in zip(cpu[name], base_cpu)],
            "cpu_ratio_median": round(float(np.median(np.array(cpu[name]) / base_cpu)), 4),
            "cpu_ratio_min": round(float(np.min(np.array(cpu[name]) / base_cpu)), 4),
            "steady_cpu_ms_per_frame": [round(x, 2) for x in steady[name]],
            "steady_cpu_ratio_to_no_station": [round(x / b, 4) for x, b in zip(steady[name], base_steady)],
            "steady_cpu_ratio_median": round(float(np.nanmedian(np.array(steady[name]) / base_steady)), 4),
            "steady_cpu_ratio_min": round(float(np.nanmin(np.array(steady[name]) / base_steady)), 4),
            "station_threads_cpu_ms_per_frame": [round(x, 3) for x in own[name]],
            "station_threads_share_of_no_station": round(float(np.median(np.array(own[name]) / base_cpu)), 4),
            "browser_cpu_ms_per_frame": [round(x, 2) for x in browser[name]],
        }
        for name, v in results.items()
    }
    summary["load_average_1min"] = {
        "min": min(loads),
        "median": float(np.median(loads)),
        "max": max(loads),
    }
    return summary


def drift(model: Path, videos: Path, png: Optional[Path]) -> Dict[str, Any]:
    """rd-infer over the stable and the drifting video; KS per frame from the records."""
    work = videos / "drift_run"
    work.mkdir(exist_ok=True)
    log = work / "stderr.txt"
    proc = _infer(
        model,
        [f"stable={videos / 'stable.avi'}", f"drift={videos / 'drift.avi'}"],
        ["--json", str(work / "r.jsonl"), "--quiet"],
        log,
    )
    proc.wait(timeout=1200)
    records = [json.loads(x) for x in (work / "r.jsonl").read_text().splitlines()]
    series: Dict[str, Any] = {}
    for stream in ("stable", "drift"):
        mine = [r for r in records if r["stream"] == stream and r.get("drift")]
        first = next((r["frame"] for r in mine if r["drift"]["drifting"]), None)
        series[stream] = {
            "frames": [r["frame"] for r in mine],
            "ks": [r["drift"]["ks"] for r in mine],
            "p": [r["drift"]["p_value"] for r in mine],
            "first_drifting_frame": first,
            "max_ks": max((r["drift"]["ks"] for r in mine), default=None),
            "ng": sum(bool(r["is_anomalous"]) for r in records if r["stream"] == stream),
        }
    warnings = [x for x in log.read_text().splitlines() if "score drift" in x]
    if png is not None:
        _plot(series, png)
    return {
        "warnings": warnings,
        **{k: {kk: vv for kk, vv in v.items() if kk not in ("frames", "ks", "p")} for k, v in series.items()},
        "series": series,
    }


def _plot(series: Dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rd_edge.core.drift import DRIFT_D

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for stream, colour in (("stable", "tab:green"), ("drift", "tab:red")):
        s = series[stream]
        ax.plot(s["frames"], s["ks"], color=colour, label=f"{stream} stream")
        if s["first_drifting_frame"] is not None:
            ax.axvline(
                s["first_drifting_frame"],
                color=colour,
                linestyle=":",
                label=f"warning ({stream}, frame {s['first_drifting_frame']})",
            )
    ax.axvline(
        N_FRAMES // 2, color="grey", linestyle="--", linewidth=0.8, label="lighting ramp starts (drift)"
    )
    ax.axhline(DRIFT_D, color="orange", linestyle="--", label=f"level D = {DRIFT_D} (and p < 0.001)")
    ax.set_xlabel("frame")
    ax.set_ylabel("KS statistic D (last <=200 OK scores vs calibration)")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Score drift: stable stream vs lighting ramp (+40 % over frames 150-300)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# --- the review round --------------------------------------------------------------------------


def _post(url: str, body: Dict[str, Any]) -> Dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _rates(records: List[Dict[str, Any]], threshold: float, every: int) -> Dict[str, Any]:
    defect = np.array([r["frame"] % every == every - 1 for r in records])
    flagged = np.array([r["score"] > threshold for r in records])
    return {
        "false_alarms": int((flagged & ~defect).sum()),
        "good": int((~defect).sum()),
        "escapes": int((~flagged & defect).sum()),
        "defective": int(defect.sum()),
    }


def review(model: Path, data: Path, videos: Path, port: int, how: str = "zero-escape") -> Dict[str, Any]:
    """Run the fresh line with the station; mark each NG frame as the operator would (the video's
    defect frames are known: every 10th); rd-calibrate --review; rates before/after, also on
    fresh_test.avi, a second stretch of the same line nobody reviewed."""
    from rd_edge.core.thresholds import Thresholds, thresholds_path

    work = videos / "review_run"
    work.mkdir(exist_ok=True)
    method = ["--method", how, "--quiet"]
    subprocess.run(
        [sys.executable, "-m", "rd_edge.cli.calibrate", str(model), "--data", str(data), *method],
        check=True,
        capture_output=True,
    )
    before = Thresholds.read(thresholds_path(model)).image_threshold
    log = work / "stderr.txt"
    proc = _infer(
        model,
        [f"line={videos / 'fresh.avi'}"],
        [
            "--evidence",
            str(work / "ev"),
            "--review",
            str(work / "review"),
            "--json",
            str(work / "r.jsonl"),
            "--station",
            str(port),
            "--station-linger",
            "600",
            "--quiet",
        ],
        log,
    )
    url = _wait_line(log, r"station: (\S+)", proc)
    deadline = time.monotonic() + 1200
    while not json.loads(urllib.request.urlopen(f"{url.rstrip('/')}/api/state", timeout=30).read())[
        "finished"
    ]:
        if time.monotonic() > deadline:
            raise SystemExit("the line did not finish in 20 minutes")
        time.sleep(0.5)
    marked = {"false_alarm": 0, "confirmed_defect": 0}
    entries = json.loads(urllib.request.urlopen(f"{url.rstrip('/')}/api/gallery/line", timeout=30).read())
    # the gallery lists the newest 24: walk the folder for all of them
    all_ids = sorted(p.stem for p in (work / "ev" / "line").glob("*.json"))
    for stem in all_ids:
        frame = json.loads((work / "ev" / "line" / f"{stem}.json").read_text())["frame"]
        label = "confirmed_defect" if frame % 10 == 9 else "false_alarm"
        _post(f"{url.rstrip('/')}/api/review", {"id": f"ev:line:{stem}", "label": label})
        marked[label] += 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    calibrated = subprocess.run(
        [
            sys.executable,
            "-m",
            "rd_edge.cli.calibrate",
            str(model),
            "--data",
            str(data),
            *method,
            "--review",
            str(work / "review"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    after = Thresholds.read(thresholds_path(model)).image_threshold
    test_log = work / "test.txt"
    _infer(
        model,
        [f"line={videos / 'fresh_test.avi'}"],
        ["--json", str(work / "test.jsonl"), "--quiet", "--threshold", "1e9"],
        test_log,
    ).wait(timeout=1200)
    test = [json.loads(x) for x in (work / "test.jsonl").read_text().splitlines()]
    line_records = [json.loads(x) for x in (work / "r.jsonl").read_text().splitlines()]
    return {
        "threshold_before": before,
        "threshold_after": after,
        "marked": marked,
        "gallery_listed": len(entries),
        "rd_calibrate_output": calibrated.stdout,
        "reviewed_line": {
            "before": _rates(line_records, before, 10),
            "after": _rates(line_records, after, 10),
        },
        "unreviewed_line": {"before": _rates(test, before, 10), "after": _rates(test, after, 10)},
    }


def screenshots(model: Path, videos: Path, prefix: Path, port: int) -> List[str]:
    """rd-infer --station --realtime over stable and drift; the page at 1600x1000 and 1280x800
    once the drift badge is on and the gallery has entries; one review click first."""
    from rdbench.browser import chromium

    work = videos / "shots"
    work.mkdir(exist_ok=True)
    log = work / "stderr.txt"
    proc = _infer(
        model,
        [f"stable={videos / 'stable.avi'}", f"drift={videos / 'drift.avi'}"],
        [
            "--realtime",
            "--evidence",
            str(work / "ev"),
            "--json",
            str(work / "r.jsonl"),
            "--station",
            str(port),
            "--station-linger",
            "120",
            "--quiet",
        ],
        log,
    )
    url = _wait_line(log, r"station: (\S+)", proc)
    saved = []
    try:
        _wait_line(log, r"(score drift on drift)", proc, timeout=300)
        time.sleep(4)
        for width, height in ((1600, 1000), (1280, 800)):
            with chromium(width, height) as driver:
                driver.get(url)
                time.sleep(5)
                buttons = driver.find_elements(
                    "css selector", "#stream-stable .ng-gallery button.false_alarm"
                )
                if buttons and width == 1600:
                    buttons[0].click()
                    time.sleep(2.5)
                path = f"{prefix}-{width}x{height}.png"
                driver.save_screenshot(path)
                saved.append(path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return saved


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("line").add_argument("out", type=Path)
    c = sub.add_parser("cost")
    c.add_argument("model", type=Path)
    c.add_argument("video", type=Path)
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument(
        "--rd-infer",
        default="",
        metavar="ARGS",
        help="more rd-infer arguments for every run, one string (e.g. '--no-spinning')",
    )
    d = sub.add_parser("drift")
    d.add_argument("model", type=Path)
    d.add_argument("videos", type=Path)
    d.add_argument("--png", type=Path)
    r = sub.add_parser("review")
    r.add_argument("model", type=Path)
    r.add_argument("data", type=Path)
    r.add_argument("videos", type=Path)
    r.add_argument("--method", default="zero-escape", help="rd-calibrate's method, before and after")
    s = sub.add_parser("screenshots")
    s.add_argument("model", type=Path)
    s.add_argument("videos", type=Path)
    s.add_argument("prefix", type=Path)
    for q in (c, r, s):
        q.add_argument("--port", type=int, default=18900)
    a = p.parse_args()
    if a.command == "line":
        line(a.out)
        return 0
    if a.command == "cost":
        result: Any = cost(
            a.model, a.video, a.rounds, a.video.parent / "cost_run", a.port, a.rd_infer.split()
        )
    elif a.command == "drift":
        result = drift(a.model, a.videos, a.png)
        result.pop("series")
    elif a.command == "review":
        result = review(a.model, a.data, a.videos, a.port, a.method)
    else:
        result = screenshots(a.model, a.videos, a.prefix, a.port)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
