"""A procedurally generated demo dataset in MVTec AD layout (numpy + OpenCV only).

It lets a user (and the tests) run training, evaluation, export and inference end to end
without downloading MVTec AD. Each category is a texture whose normal images vary (phase,
small rotation, scale, brightness, lighting, sensor noise); each defect type is drawn on top
with an alpha map, and the mask is exactly the set of pixels the defect was drawn on (alpha below
0.1 is not drawn at all, so faint anti-aliasing fringes are neither drawn nor masked).

Generation is deterministic: every image is drawn from its own numpy Generator seeded from
(seed, category, split, index), so the same arguments give byte-identical files on the same
platform and library versions, independent of the order or number of other images.
"""

from __future__ import annotations

import colorsys
import json
import shutil
import zlib
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from rd_edge.core.errors import DatasetError
from rd_edge.core.files import PathLike
from rd_edge.data.demo_names import DEMO_CATEGORIES, DEMO_DEFECTS

_MARKER = ".rd_edge_demo.json"
_GENERATOR_VERSION = 1
# Alpha below this is not drawn, so the mask (alpha >= it) holds exactly the changed pixels.
_MIN_ALPHA = 0.1

Params = Dict[str, float]
_Defect = Tuple[np.ndarray, np.ndarray]  # (alpha HxW in [0, 1], BGR color HxWx3 or 3)


class DemoImage(NamedTuple):
    """One rendered demo image: with the defect, its mask, and the same image without it."""

    image: np.ndarray  # HxWx3 uint8 BGR
    mask: np.ndarray  # HxW bool, True exactly where the defect was drawn
    normal: np.ndarray  # HxWx3 uint8 BGR, identical to ``image`` outside ``mask``


# ---------------------------------------------------------------------------------------------
# Textures. Each returns an intensity field in about [0, 1]; sizes are given for 256 px and
# scaled with the image size so the demo looks the same at any resolution.


def _rotated(params: Params, xx: np.ndarray, yy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Image coordinates rotated by params["theta"] and shifted by the phases."""
    c, s = np.cos(params["theta"]), np.sin(params["theta"])
    u = xx * c + yy * s + params["phase_u"]
    v = -xx * s + yy * c + params["phase_v"]
    return u, v


def _weave_params(rng: np.random.Generator, scale: float) -> Params:
    period = 10.0 * scale * rng.uniform(0.95, 1.05)
    return {
        "theta": np.deg2rad(rng.uniform(-4, 4)),
        "period": period,
        "phase_u": rng.uniform(0, 2 * period),
        "phase_v": rng.uniform(0, 2 * period),
    }


def _weave(params: Params, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plain weave: warp and weft threads that alternate over and under each other."""
    u, v = _rotated(params, xx, yy)
    p = params["period"]
    warp = np.cos(np.pi * u / p) ** 2  # one bright thread per period
    weft = np.cos(np.pi * v / p) ** 2
    # The thread on top alternates every crossing: a checkerboard of period 2p.
    on_top = (np.floor(u / p + 0.5) + np.floor(v / p + 0.5)) % 2 == 0
    return np.where(on_top, 0.25 + 0.65 * warp * (0.6 + 0.4 * weft), 0.25 + 0.65 * weft * (0.6 + 0.4 * warp))


def _dots_params(rng: np.random.Generator, scale: float) -> Params:
    spacing = 16.0 * scale * rng.uniform(0.97, 1.03)
    return {
        "theta": np.deg2rad(rng.uniform(-2, 2)),
        "spacing": spacing,
        "radius": 4.0 * scale * rng.uniform(0.9, 1.1),
        "jitter": 1.2 * scale,
        "phase_u": rng.uniform(0, spacing),
        "phase_v": rng.uniform(0, spacing),
    }


def _dots(params: Params, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark dots on a light background, on a lattice with per-dot jitter and radius."""
    u, v = _rotated(params, xx, yy)
    s = params["spacing"]
    col, row = np.floor(u / s), np.floor(v / s)
    # Per-cell random values are indexed from 0; the lattice itself may start below 0.
    i = (col - col.min()).astype(np.int64)
    j = (row - row.min()).astype(np.int64)
    shape = (int(j.max()) + 1, int(i.max()) + 1)
    # Jitter + radius stay below s/2, so each pixel's nearest dot is the one of its own cell.
    jitter_u = rng.uniform(-1, 1, shape) * params["jitter"]
    jitter_v = rng.uniform(-1, 1, shape) * params["jitter"]
    radius = params["radius"] * rng.uniform(0.92, 1.08, shape)
    du = u - ((col + 0.5) * s + jitter_u[j, i])
    dv = v - ((row + 0.5) * s + jitter_v[j, i])
    dot = np.clip(radius[j, i] + 0.5 - np.sqrt(du * du + dv * dv), 0.0, 1.0)  # 1 px AA edge
    return 0.85 - 0.6 * dot


def _grain_params(rng: np.random.Generator, scale: float) -> Params:
    period = 12.0 * scale * rng.uniform(0.9, 1.1)
    return {
        "theta": np.deg2rad(rng.uniform(-3, 3)),
        "period": period,
        "warp": 6.0 * scale,
        "streak": 15.0 * scale,
        "phase_u": 0.0,
        "phase_v": rng.uniform(0, period),
    }


def _grain(params: Params, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wood-like grain: wavy growth lines plus fine streaks along them."""
    u, v = _rotated(params, xx, yy)
    size = xx.shape[0]
    warp = cv2.resize(
        rng.standard_normal((6, 6)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * (v + params["warp"] * warp) / params["period"])) ** 2
    streak = max(3, int(params["streak"]) | 1)
    fine = cv2.blur(rng.standard_normal((size, size)).astype(np.float32), (streak, 1))
    return 0.45 + 0.35 * rings + 0.25 * fine


class _Texture(NamedTuple):
    sample: Callable[[np.random.Generator, float], Params]
    draw: Callable[[Params, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
    dark: Tuple[float, float, float]  # BGR at intensity 0
    light: Tuple[float, float, float]  # BGR at intensity 1


_TEXTURES: Dict[str, _Texture] = {
    "weave": _Texture(_weave_params, _weave, (0.20, 0.25, 0.30), (0.70, 0.82, 0.90)),
    "dots": _Texture(_dots_params, _dots, (0.25, 0.20, 0.15), (0.85, 0.88, 0.88)),
    "grain": _Texture(_grain_params, _grain, (0.10, 0.20, 0.35), (0.50, 0.72, 0.90)),
}


def _colorize(intensity: np.ndarray, texture: _Texture) -> np.ndarray:
    """Map an intensity field to BGR between the texture's dark and light colors."""
    dark = np.asarray(texture.dark, np.float32)
    light = np.asarray(texture.light, np.float32)
    return dark + intensity[..., None].astype(np.float32) * (light - dark)


# ---------------------------------------------------------------------------------------------
# Defects. Each returns (alpha HxW in [0, 1], color HxWx3 or 3) to blend over the texture.


def _canvas_alpha(size: int, draw: Callable[[np.ndarray], None]) -> np.ndarray:
    """Alpha from an anti-aliased OpenCV drawing on an 8-bit canvas (LINE_AA needs 8 bit)."""
    canvas = np.zeros((size, size), np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255.0


def _center(rng: np.random.Generator, size: int) -> np.ndarray:
    """A defect center away from the border, so the whole defect is visible."""
    return rng.uniform(0.2 * size, 0.8 * size, 2)


_SHIFT = 4  # OpenCV drawing with 4 fractional bits, for sub-pixel geometry.


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates as OpenCV fixed-point integers."""
    return np.rint(points * (1 << _SHIFT)).astype(np.int32)


def _scratch(rng: np.random.Generator, size: int, scale: float, ctx: "_Context") -> _Defect:
    """A thin curved line, lighter or darker than the surface."""
    length = rng.uniform(0.25, 0.5) * 256.0 * scale  # == size at the default defect scale
    angle = rng.uniform(0, np.pi)
    center = _center(rng, size)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    bend = rng.uniform(-0.2, 0.2) * length
    t = np.linspace(-0.5, 0.5, 48)[:, None]
    # Quadratic curve: straight line plus a parabolic bend along the normal.
    points = center + t * length * direction + (1 - 4 * t**2) * bend * normal
    thickness = max(1, int(round(rng.uniform(1.0, 2.5) * scale)))
    alpha = _canvas_alpha(
        size, lambda c: cv2.polylines(c, [_fixed(points)], False, 255, thickness, cv2.LINE_AA, _SHIFT)
    )
    shade = 0.92 if rng.random() < 0.5 else 0.08
    return alpha, np.full(3, shade, np.float32)


def _hole(rng: np.random.Generator, size: int, scale: float, ctx: "_Context") -> _Defect:
    """A dark elliptical hole, about as dark as the texture's own dark parts.

    Not black: a detector must see the shape, not just find the darkest pixel.
    """
    axes = rng.uniform(5, 14, 2) * scale
    angle = rng.uniform(0, 180)
    center = _center(rng, size)
    alpha = _canvas_alpha(
        size,
        lambda c: cv2.ellipse(
            c,
            tuple(int(v) for v in _fixed(center)),
            tuple(int(v) for v in _fixed(axes)),
            angle,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            _SHIFT,
        ),
    )
    return alpha, _colorize(np.full(1, rng.uniform(0.1, 0.25)), ctx.texture)[0]


def _stain(rng: np.random.Generator, size: int, scale: float, ctx: "_Context") -> _Defect:
    """A translucent colored blob with a soft edge; the texture shows through it."""
    radius = rng.uniform(10, 22) * scale
    center = _center(rng, size)
    offsets = rng.uniform(-0.6, 0.6, (4, 2)) * radius
    radii = rng.uniform(0.4, 0.8, 4) * radius

    def draw(canvas: np.ndarray) -> None:
        for offset, r in zip(offsets, radii):
            cv2.circle(
                canvas,
                tuple(int(v) for v in _fixed(center + offset)),
                int(r * (1 << _SHIFT)),
                255,
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )

    blob = cv2.GaussianBlur(_canvas_alpha(size, draw), (0, 0), max(1.0, radius / 4))
    alpha = rng.uniform(0.6, 0.85) * np.clip((blob - 0.15) / 0.5, 0.0, 1.0)
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.6)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return alpha, np.array([b, g, r], np.float32)


def _misprint(rng: np.random.Generator, size: int, scale: float, ctx: "_Context") -> _Defect:
    """A rectangular patch where the pattern is rotated and shifted (a structural defect)."""
    params = dict(ctx.params)
    params["theta"] += np.deg2rad(rng.uniform(20, 45) * rng.choice([-1, 1]))
    params["phase_u"] += rng.uniform(0, 20 * scale)
    params["phase_v"] += rng.uniform(0, 20 * scale)
    half = rng.uniform(10, 22, 2) * scale
    angle = rng.uniform(0, np.pi / 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    polygon = _center(rng, size) + corners @ rotation.T
    alpha = _canvas_alpha(size, lambda c: cv2.fillPoly(c, [_fixed(polygon)], 255, cv2.LINE_AA, _SHIFT))
    color = _colorize(ctx.texture.draw(params, ctx.xx, ctx.yy, rng), ctx.texture)
    return alpha, color


class _Context(NamedTuple):
    texture: _Texture
    params: Params
    xx: np.ndarray
    yy: np.ndarray


_DEFECTS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "misprint": _misprint}


# ---------------------------------------------------------------------------------------------
# Rendering and writing.


def render_demo_image(
    category: str, defect_type: str, image_size: int, rng: np.random.Generator, defect_scale: float = 1.0
) -> DemoImage:
    """Render one demo image of ``category`` with ``defect_type`` ("good" for none).

    ``defect_scale`` shrinks (< 1) or grows the defects relative to the texture: at 1024 px,
    0.25 draws them as large as at 256 px, a few pixels once the frame is resized to 256.
    """
    texture = _TEXTURES[_check_category(category)]
    if defect_type != "good" and defect_type not in _DEFECTS:
        raise DatasetError(
            f"unknown demo defect type {defect_type!r}; known: good, {', '.join(DEMO_DEFECTS)}"
        )
    scale = image_size / 256.0
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    params = texture.sample(rng, scale)
    surface = _colorize(texture.draw(params, xx, yy, rng), texture)
    lighting = _lighting(rng, xx, yy, image_size)
    noise = rng.normal(0.0, rng.uniform(0.01, 0.02), surface.shape).astype(np.float32)
    if defect_type == "good":
        defective, mask = surface, np.zeros((image_size, image_size), bool)
    else:
        ctx = _Context(texture, params, xx, yy)
        alpha, color = _DEFECTS[defect_type](rng, image_size, scale * defect_scale, ctx)
        defective, mask = _apply_defect(surface, alpha, color)
    return DemoImage(_finish(defective, lighting, noise), mask, _finish(surface, lighting, noise))


def _apply_defect(surface: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Blend ``color`` over ``surface`` with ``alpha``; returns image and mask."""
    mask = alpha >= _MIN_ALPHA
    blended = surface + alpha[..., None] * (color - surface)
    # Outside the mask keep the exact same floats, so `normal` equals `image` there.
    return np.where(mask[..., None], blended, surface), mask


def _lighting(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, size: int) -> np.ndarray:
    """Per-image brightness, color balance and a gentle illumination gradient (HxWx3)."""
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size - 0.5 * (np.cos(angle) + np.sin(angle))
    gain = rng.uniform(0.9, 1.1) * (1.0 + rng.uniform(0.0, 0.12) * ramp)
    balance = rng.uniform(0.97, 1.03, 3).astype(np.float32)
    return gain[..., None].astype(np.float32) * balance


def _finish(surface: np.ndarray, lighting: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Apply lighting and sensor noise and quantize to uint8."""
    return np.clip(np.rint((surface * lighting + noise) * 255.0), 0, 255).astype(np.uint8)


def _check_category(category: str) -> str:
    if category not in _TEXTURES:
        raise DatasetError(
            f"unknown demo category {category!r}; known categories: {', '.join(DEMO_CATEGORIES)}"
        )
    return category


def _rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    """The Generator of one image; crc32 (not hash()) because str hashing is salted per run."""
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(split.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG; imencode + tofile so non-ASCII paths work everywhere."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise DatasetError(f"could not encode {path} as PNG")
    data.tofile(str(path))


def write_demo_dataset(
    root: PathLike,
    categories: Optional[Sequence[str]] = None,
    image_size: int = 256,
    n_train: int = 60,
    n_test_good: int = 10,
    n_test_per_defect: int = 8,
    seed: int = 0,
    defect_scale: float = 1.0,
) -> List[Path]:
    """Write demo categories in MVTec AD layout under ``root``; returns the category folders.

    ``defect_scale`` (> 0): defect size relative to the default (see render_demo_image).

    A category folder written before by this function is replaced; any other non-empty
    folder in the way raises DatasetError rather than being overwritten.
    """
    names = [_check_category(c) for c in (DEMO_CATEGORIES if categories is None else categories)]
    _check_counts(
        image_size=image_size,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_per_defect=n_test_per_defect,
        seed=seed,
    )
    if not (isinstance(defect_scale, (int, float)) and 0 < defect_scale <= 16):
        raise ValueError(f"defect_scale must be a number in (0, 16], got {defect_scale!r}")
    settings = {
        "image_size": image_size,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_per_defect": n_test_per_defect,
        "seed": seed,
    }
    if defect_scale != 1.0:  # only then: earlier markers (and their files) stay as they were
        settings["defect_scale"] = float(defect_scale)
    for name in names:  # Refuse before writing anything, not halfway through.
        _check_writable(Path(root) / name)
    folders = []
    for name in names:
        folder = Path(root) / name
        _prepare_folder(folder)
        _write_category(folder, name, **settings)
        marker = {
            "generator": "rd-edge demo-data",
            "version": _GENERATOR_VERSION,
            "category": name,
            **settings,
        }
        (folder / _MARKER).write_text(json.dumps(marker, sort_keys=True, indent=1) + "\n")
        folders.append(folder)
    return folders


def _check_counts(**values: int) -> None:
    """Validate the integer arguments of write_demo_dataset."""
    minimum = {"image_size": 32, "n_train": 1}
    for key, value in values.items():
        low = minimum.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")


def _check_writable(folder: Path) -> None:
    """Raise DatasetError if ``folder`` holds anything but an earlier demo dataset."""
    if (folder / _MARKER).is_file():
        return
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DatasetError(
            f"cannot write the demo dataset to {folder}: it exists and was not "
            "written by `rd-edge demo-data`; choose another folder or remove it"
        )


def _prepare_folder(folder: Path) -> None:
    """Create ``folder``, or clear the images of an earlier demo dataset written there."""
    _check_writable(folder)
    if (folder / _MARKER).is_file():
        # A smaller rerun must not leave stale images behind.
        for sub in ("train", "test", "ground_truth"):
            shutil.rmtree(folder / sub, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def _write_category(
    folder: Path,
    category: str,
    image_size: int,
    n_train: int,
    n_test_good: int,
    n_test_per_defect: int,
    seed: int,
    defect_scale: float = 1.0,
) -> None:
    """Write train/good, test/<type> and ground_truth/<type> of one category."""
    jobs = [("train", "good", n_train), ("test", "good", n_test_good)]
    jobs += [("test", defect, n_test_per_defect) for defect in DEMO_DEFECTS]
    for split, defect, count in jobs:
        if count == 0:
            continue
        image_dir = folder / split / defect
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir = folder / "ground_truth" / defect
        if defect != "good":
            mask_dir.mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(count - 1)))
        for index in range(count):
            rng = _rng(seed, category, f"{split}/{defect}", index)
            sample = render_demo_image(category, defect, image_size, rng, defect_scale)
            stem = f"{index:0{width}d}"
            _write_png(image_dir / f"{stem}.png", sample.image)
            if defect != "good":
                _write_png(mask_dir / f"{stem}_mask.png", sample.mask.astype(np.uint8) * 255)
