"""The synthetic demo dataset's category and defect names, without OpenCV.

rd_edge.data.synthetic (which draws the images, with OpenCV) re-exports them; ``rd-edge``'s
parser lists them in its help from here, so ``rd-edge --help`` and ``rd-edge station`` run where
OpenCV is not installed (a Jetson venv made without --system-site-packages).
"""

from typing import Tuple

DEMO_CATEGORIES: Tuple[str, ...] = ("weave", "dots", "grain")
DEMO_DEFECTS: Tuple[str, ...] = ("scratch", "hole", "stain", "misprint")
