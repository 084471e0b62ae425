"""rd_export: checkpoint -> one fused ONNX graph (teacher, OCBE, student, anomaly-map reduction).

Installed from the ``export/`` folder as the package ``rd_export``; the console script is
``rd-export``. The ONNX path needs torch; building a TensorRT engine from an ONNX file does not.
"""

from rd_edge import __version__

__all__ = ["__version__"]
