"""Torch-free inference runtime: backends, preprocessing, Detector API, rd-infer."""
