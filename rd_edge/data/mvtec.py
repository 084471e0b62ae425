"""Discovery of one MVTec AD category folder.

Layout (the one MVTec AD uses, and the one ``rd-edge demo-data`` writes)::

    DIR/train/good/*.png                      normal training images
    DIR/test/<type>/*.png                     test images; type "good" is normal
    DIR/ground_truth/<type>/<stem>_mask.png   pixel masks of the anomalous test images

Only ``train/good`` is needed to train. ``test`` is checked when :meth:`test_samples` is
called. Masks are all or nothing: when some anomalous test images have a mask, one without is
an error (as an all-zero mask it would move the pixel threshold); when none has one, the pixel
metrics use all-zero masks. A mask must have its image's size (read_sample_masks checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.errors import DatasetError
from rd_edge.core.images import IMAGE_EXTENSIONS, PathLike, image_size, list_images, read_mask

GOOD = "good"

_DEMO_HINT = "to try rd-edge without data, run `rd-edge demo-data demo_data` and use demo_data/weave"


@dataclass(frozen=True)
class Sample:
    """One test image with its defect type ("good" = normal) and mask file, if any."""

    path: Path
    defect_type: str
    mask_path: Optional[Path]

    @property
    def is_anomalous(self) -> bool:
        """True unless the image is of type "good"."""
        return self.defect_type != GOOD


class MVTecCategory:
    """One category folder in MVTec AD layout (e.g. ``mvtec_ad/bottle``)."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        self._train_paths = self._find_train_paths()

    def __repr__(self) -> str:
        return f"MVTecCategory({str(self.root)!r})"

    @property
    def name(self) -> str:
        """The category name: the folder's name."""
        return self.root.resolve().name

    def train_paths(self) -> List[Path]:
        """The sorted normal training images under ``train/good`` (subfolders included)."""
        return list(self._train_paths)

    def defect_types(self) -> List[str]:
        """The sorted anomalous types: subfolders of ``test`` holding images, except "good"."""
        return [t for t in self._test_types() if t != GOOD]

    def test_samples(self) -> List[Sample]:
        """All test images, sorted by type then name; DatasetError if there is no test set."""
        types = self._test_types()
        if not types:
            raise DatasetError(
                f"expected test images in {self.root / 'test'}/<type>/ (type 'good' for normal "
                f"images), found none; add test images in MVTec AD layout to evaluate"
            )
        anomalous = [t for t in types if t != GOOD]
        gt_root = self.root / "ground_truth"
        if anomalous and not gt_root.is_dir():
            raise DatasetError(
                f"expected a folder {gt_root} with masks <type>/<stem>_mask.png for the "
                f"anomalous test types ({', '.join(anomalous)}), found no such folder; "
                "add the masks, or create the folder if masks are not available "
                "(images without a mask are then evaluated as all-zero masks)"
            )
        return require_all_masks([sample for t in types for sample in self._samples_of(t)], gt_root)

    def _find_train_paths(self) -> List[Path]:
        """Validate the root and train/good folders and return the training images."""
        if not self.root.is_dir():
            found = "a file" if self.root.exists() else "no such folder"
            raise DatasetError(
                f"expected an MVTec AD category folder at {self.root}, found {found}; {_DEMO_HINT}"
            )
        train_dir = self.root / "train" / GOOD
        if not train_dir.is_dir():
            raise DatasetError(
                f"expected {train_dir} with normal training images, found no such folder"
                f"{self._categories_hint()}; {_DEMO_HINT}"
            )
        paths = list_images(train_dir)
        if not paths:
            raise DatasetError(
                f"expected images ({', '.join(IMAGE_EXTENSIONS)}) in {train_dir}, found none; "
                "put the normal training images there"
            )
        return paths

    def _categories_hint(self) -> str:
        """Hint for the common mistake of passing the dataset root instead of a category."""
        categories = sorted(d.name for d in self.root.iterdir() if (d / "train" / GOOD).is_dir())
        if not categories:
            return ""
        return (
            f" ({self.root} looks like a dataset root holding the categories "
            f"{', '.join(categories)}; pass one of them, e.g. {self.root / categories[0]})"
        )

    def _test_types(self) -> List[str]:
        """Sorted names of the test subfolders that hold at least one image."""
        test_dir = self.root / "test"
        if not test_dir.is_dir():
            return []
        return sorted(
            d.name
            for d in test_dir.iterdir()
            if d.is_dir() and not d.name.startswith(".") and list_images(d, recursive=False)
        )

    def _samples_of(self, defect_type: str) -> List[Sample]:
        """The samples of one test type, with mask paths for anomalous ones that have a mask."""
        images = list_images(self.root / "test" / defect_type, recursive=False)
        if defect_type == GOOD:
            return [Sample(path, GOOD, None) for path in images]
        mask_dir = self.root / "ground_truth" / defect_type
        return [
            Sample(path, defect_type, _mask_or_none(mask_dir / f"{path.stem}_mask.png")) for path in images
        ]


def _mask_or_none(path: Path) -> Optional[Path]:
    """The mask path if the file exists, else None (evaluated as an all-zero mask)."""
    return path if path.is_file() else None


def require_all_masks(samples: List[Sample], where: PathLike) -> List[Sample]:
    """``samples``, or DatasetError when some anomalous ones have a mask and others do not."""
    anomalous = [s for s in samples if s.is_anomalous]
    missing = [s.path for s in anomalous if s.mask_path is None]
    if missing and len(missing) < len(anomalous):
        raise DatasetError(
            f"{len(missing)} of {len(anomalous)} anomalous test images have no mask in {where}, "
            f"e.g. {missing[0]}; add their masks (an all-zero mask would move the pixel "
            f"threshold), or remove those images"
        )
    return samples


def read_sample_masks(samples: Sequence[Sample], size: Tuple[int, int]) -> np.ndarray:
    """[N,H,W] bool masks at ``size`` (all-zero for samples without one); DatasetError when a mask
    does not have its image's size (a resized mask of another shape labels the wrong pixels)."""
    masks = np.zeros((len(samples),) + tuple(size), bool)
    for i, sample in enumerate(samples):
        if sample.mask_path is None:
            continue
        mask_hw, image_hw = image_size(sample.mask_path), image_size(sample.path)
        if tuple(mask_hw) != tuple(image_hw):
            raise DatasetError(
                f"mask {sample.mask_path} is {mask_hw[1]}x{mask_hw[0]} pixels, its image {sample.path} "
                f"is {image_hw[1]}x{image_hw[0]}: a mask must have its image's size"
            )
        masks[i] = read_mask(sample.mask_path, size)
    return masks
