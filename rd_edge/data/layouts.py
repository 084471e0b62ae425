"""One place that finds datasets: MVTec AD, MVTec AD 2, VisA and plain folders.

Every layout gives the same two things: the normal training images (``train_paths``) and the
labelled test images with their masks (``test_samples``), so training, evaluation and
calibration do not care which layout the data came in. Layouts (``DIR`` is what ``--data`` names):

MVTec AD      DIR/train/good, DIR/test/<type>, DIR/ground_truth/<type>/<stem>_mask.png
MVTec AD 2    DIR/train/good, DIR/validation/good, DIR/test_public/{good,bad},
              masks DIR/test_public/ground_truth/bad/<stem>_mask.png (or DIR/ground_truth/bad)
VisA          ROOT/split_csv/1cls.csv (columns object,split,label,image,mask; paths relative to
              ROOT); DIR is ROOT/<object>, or ROOT itself when it holds one object
folders       --good DIR [--defect DIR [--masks DIR]]: masks named <stem>.png or <stem>_mask.png;
              a folder of images given as --data is taken as --good. With --defect, every
              fifth good image (at least 2) is kept out of training as the good test images.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional, Tuple

from rd_edge.core.errors import DatasetError
from rd_edge.core.files import PathLike, leaves_folder
from rd_edge.core.images import list_images
from rd_edge.data.mvtec import GOOD, MVTecCategory, Sample, _mask_or_none, require_all_masks

LAYOUTS = ("mvtec", "mvtec2", "visa", "folders")
VISA_SPLIT = Path("split_csv") / "1cls.csv"
FOLDER_TEST_EVERY = 5  # folders layout: every 5th good image is a test image (when defects exist)


class MVTecAD2Category(MVTecCategory):
    """One MVTec AD 2 object: train/good, validation/good, test_public/{good,bad} with masks."""

    layout = "mvtec2"

    def validation_paths(self) -> List[Path]:
        """Normal images of validation/good (MVTec AD 2 keeps them for thresholds), or []."""
        folder = self.root / "validation" / GOOD
        return list_images(folder) if folder.is_dir() else []

    def test_samples(self) -> List[Sample]:
        test = self.root / "test_public"
        missing = [f"test_public/{t}" for t in (GOOD, "bad") if not (test / t).is_dir()]
        if missing:
            raise DatasetError(
                f"expected MVTec AD 2 test folders {', '.join(missing)} in {self.root}, "
                "found none; download the test_public split"
            )
        masks = next(
            (d for d in (test / "ground_truth" / "bad", self.root / "ground_truth" / "bad") if d.is_dir()),
            None,
        )
        if masks is None:
            raise DatasetError(
                f"expected the masks of {test / 'bad'} in {test / 'ground_truth' / 'bad'}, "
                "found no such folder"
            )
        good = [Sample(p, GOOD, None) for p in list_images(test / GOOD)]
        bad = [
            Sample(p, "bad", _mask_or_none(masks / f"{p.stem}_mask.png")) for p in list_images(test / "bad")
        ]
        return require_all_masks(good + bad, masks)


class MVTecADCategory(MVTecCategory):
    layout = "mvtec"

    def validation_paths(self) -> List[Path]:
        return []


class VisACategory:
    """One VisA object, read from the dataset's ``split_csv/1cls.csv``."""

    layout = "visa"

    def __init__(self, root: Path, obj: str) -> None:
        self.root, self.object = root, obj
        self._rows = [r for r in _read_visa_rows(root) if r["object"] == obj]
        listed = root / VISA_SPLIT
        self._train = [
            _inside(root, r["image"], listed)
            for r in self._rows
            if r["split"] == "train" and r["label"] == "normal"
        ]
        if not self._train:
            raise DatasetError(f"{root / VISA_SPLIT} lists no normal training images of {obj!r}")
        _require_files(self._train[:1], root / VISA_SPLIT)

    @property
    def name(self) -> str:
        return self.object

    def train_paths(self) -> List[Path]:
        return list(self._train)

    def validation_paths(self) -> List[Path]:
        return []

    def test_samples(self) -> List[Sample]:
        rows = [r for r in self._rows if r["split"] == "test"]
        if not rows:
            raise DatasetError(f"{self.root / VISA_SPLIT} lists no test images of {self.object!r}")
        listed = self.root / VISA_SPLIT
        samples = [
            Sample(
                _inside(self.root, r["image"], listed),
                GOOD if r["label"] == "normal" else "anomaly",
                _inside(self.root, r["mask"], listed) if r["label"] != "normal" and r.get("mask") else None,
            )
            for r in rows
        ]
        _require_files([s.path for s in samples], listed)
        return require_all_masks(samples, listed)


class FolderDataset:
    """Plain folders: good images, optional defect images and optional masks."""

    layout = "folders"

    def __init__(
        self, good: PathLike, defect: Optional[PathLike] = None, masks: Optional[PathLike] = None
    ) -> None:
        if masks is not None and defect is None:
            raise DatasetError(
                "masks were given without defect images; masks belong to the defect images "
                "(give the defect folder too)"
            )
        self.root = Path(good)
        self.good = _images_in(self.root, "good")
        self.defect_root = Path(defect) if defect is not None else None
        self.defect = _images_in(self.defect_root, "defect") if self.defect_root is not None else []
        self.masks = Path(masks) if masks is not None else None
        if self.masks is not None and not self.masks.is_dir():
            raise DatasetError(f"expected a folder of masks at {self.masks}, found no such folder")
        held = set(range(0, len(self.good), FOLDER_TEST_EVERY)) if self.defect else set()
        if self.defect and len(held) < 2:
            held = {0, len(self.good) - 1}
        self._test_good = [p for i, p in enumerate(self.good) if i in held]
        self._train = [p for i, p in enumerate(self.good) if i not in held]

    @property
    def name(self) -> str:
        return self.root.resolve().name

    def train_paths(self) -> List[Path]:
        return list(self._train)

    def validation_paths(self) -> List[Path]:
        return []

    def test_samples(self) -> List[Sample]:
        if not self.defect:
            raise DatasetError(
                f"only good images ({self.root}); give a folder of defect images too "
                "to evaluate or calibrate on labelled images"
            )
        return require_all_masks(
            [Sample(p, GOOD, None) for p in self._test_good]
            + [Sample(p, "defect", self._mask_of(p)) for p in self.defect],
            self.masks or "the masks folder",
        )

    def _mask_of(self, image: Path) -> Optional[Path]:
        """MASKS/<path relative to the defect folder>.png or ..._mask.png: defect/a/x.png and
        defect/b/x.png have masks a/x.png and b/x.png, never one shared x.png."""
        if self.masks is None or self.defect_root is None:
            return None
        relative = image.relative_to(self.defect_root).with_suffix("")
        return next(
            (m for m in (self.masks / f"{relative}.png", self.masks / f"{relative}_mask.png") if m.is_file()),
            None,
        )


def open_dataset(
    data: Optional[PathLike] = None,
    good: Optional[PathLike] = None,
    defect: Optional[PathLike] = None,
    masks: Optional[PathLike] = None,
):
    """The dataset at ``data`` (layout found from its files), or plain folders from ``good``."""
    if good is not None:
        if data is not None:
            raise DatasetError("give either a dataset folder or a folder of good images, not both")
        return FolderDataset(good, defect, masks)
    if data is None:
        raise DatasetError(
            "no data given: expected a dataset folder (MVTec AD, MVTec AD 2, VisA) or a folder of good images"
        )
    if defect is not None or masks is not None:
        raise DatasetError("defect and mask folders go with a folder of good images, not a dataset folder")
    root = Path(data)
    if not root.is_dir():
        found = "a file" if root.exists() else "no such folder"
        raise DatasetError(
            f"expected a dataset folder at {root}, found {found}; to try rd-edge without "
            "data, run `rd-edge demo-data demo_data` and use demo_data/weave"
        )
    return _detect(root)


class ExtraGood:
    """``dataset`` whose training images include more good ones (rd-train --data DIR --good MORE):
    a folder of good images, or a station review folder, whose frames marked false alarm are good
    parts the model should learn. Everything else (test split, layout) is ``dataset``'s."""

    def __init__(self, dataset, folder: PathLike) -> None:
        self._dataset = dataset
        self.extra = extra_good_paths(folder)

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)

    def train_paths(self) -> List[Path]:
        return self._dataset.train_paths() + self.extra


def extra_good_paths(folder: PathLike) -> List[Path]:
    """The good images of ``folder``: a review folder's false alarms, else every image in it."""
    from rd_edge.core.review import REVIEW_LABELS, reviewed_images

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(
            f"expected a folder of good images or a review folder at {root}, found "
            f"{'a file' if root.exists() else 'nothing'}"
        )
    if any((root / label).is_dir() for label in REVIEW_LABELS):
        good, _ = reviewed_images(root)
        if not good:
            raise DatasetError(f"{root} is a review folder without false alarms: nothing to add as good")
        return good
    images = list_images(root)
    if not images:
        raise DatasetError(f"{root} holds no images to add as good")
    return images


def _detect(root: Path):
    """Pick the layout from the files present."""
    if (root / VISA_SPLIT).is_file() or (root.parent / VISA_SPLIT).is_file():
        return _open_visa(root)
    if (root / "test_public").is_dir() or (root / "validation" / GOOD).is_dir():
        return MVTecAD2Category(root)
    if (root / "train").is_dir():
        return MVTecADCategory(root)
    if list_images(root, recursive=False):
        return FolderDataset(root)
    return MVTecADCategory(root)  # raises its own error naming train/good and any categories inside


def _open_visa(root: Path) -> VisACategory:
    if (root / VISA_SPLIT).is_file():
        objects = sorted({r["object"] for r in _read_visa_rows(root)})
        if len(objects) != 1:
            raise DatasetError(
                f"{root} is a VisA dataset with the objects {', '.join(objects)}; "
                f"pass one of them, e.g. {root / objects[0]}"
            )
        return VisACategory(root, objects[0])
    return VisACategory(root.parent, root.name)


def _read_visa_rows(root: Path) -> List[dict]:
    path = root / VISA_SPLIT
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read the VisA split {path}: {exc}") from exc
    need = {"object", "split", "label", "image", "mask"}
    if not rows or not need <= set(rows[0]):
        found = sorted(rows[0]) if rows else "no rows"
        raise DatasetError(f"expected {path} with the columns {', '.join(sorted(need))}, found {found}")
    return rows


def _inside(root: Path, relative: str, listed_in: Path) -> Path:
    """ROOT/relative, or DatasetError when the listed path is absolute or leaves the dataset root."""
    path = root / relative
    if leaves_folder(relative):  # lexical: a dataset may link its images elsewhere
        raise DatasetError(
            f"{listed_in} lists {relative!r}, outside the dataset folder {root}; dataset "
            f"paths must be relative and stay inside it"
        )
    return path


def _require_files(paths: List[Path], listed_in: Path) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{listed_in} lists {len(missing)} image(s) that do not exist, e.g. {missing[0]}; "
            "is the dataset fully extracted?"
        )


def _images_in(folder: Path, what: str) -> List[Path]:
    if not folder.is_dir():
        found = "a file" if folder.exists() else "no such folder"
        raise DatasetError(f"expected a folder of {what} images at {folder}, found {found}")
    images = list_images(folder)
    if not images:
        raise DatasetError(f"expected {what} images in {folder}, found none")
    return images


def split_sizes(dataset) -> Tuple[int, int]:
    """(training images, test images) for messages; test 0 when there is no test split."""
    try:
        n_test = len(dataset.test_samples())
    except DatasetError:
        n_test = 0
    return len(dataset.train_paths()), n_test
