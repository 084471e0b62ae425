"""The TensorRT runner and the CUDA preprocessing glue, driven through fake tensorrt/pycuda.

No GPU here: these fakes implement the slice of the TensorRT (8.5+ name-based I/O) and pycuda
APIs the runtime calls, over numpy "device memory", and compute the stand-in model. They check
the runtime's own logic — buffer sizes, batch shapes, addresses, copies, batch-slot offsets,
fallbacks — not TensorRT or the CUDA C kernel; the GPU tests in test_trt_backend.py and
test_cuda_preprocess.py do that where a GPU exists.
"""
import sys
import types

import numpy as np
import pytest

from rd_edge.core.errors import BackendError
from rd_edge.runtime import Detector, load_runner
from rd_edge.core.sidecar import EngineSidecar
from rd_edge.runtime.backends.trt import TensorRTRunner

H, W, MAX_BATCH = 24, 32, 4
WEIGHTS = np.array([0.5, 0.3, 0.2], np.float32)  # the stand-in model of conftest.py


class FakeCuda:
    """pycuda.driver over a dict of numpy byte arrays keyed by fake device addresses."""

    def __init__(self):
        self.memory = {}
        self.next_address = 0x1000
        self.context_depth = 0
        self.kernel_calls = []
        fake = self

        class Alloc:
            def __init__(self, nbytes):
                self.address = fake.next_address
                fake.next_address += nbytes + 0x100
                fake.memory[self.address] = np.zeros(nbytes, np.uint8)

            def __int__(self):
                return self.address

            def free(self):
                del fake.memory[self.address]

        class Context:
            @staticmethod
            def pop():
                assert fake.context_depth > 0, "pop without push"
                fake.context_depth -= 1

        class PrimaryContext:
            detached = False

            def push(self):
                fake.context_depth += 1

            def detach(self):
                PrimaryContext.detached = True

        class Device:
            @staticmethod
            def count():
                return 1

            def __init__(self, index):
                self.index = index

            def name(self):
                return "Fake GPU"

            def compute_capability(self):
                return (8, 7)

            def retain_primary_context(self):
                return PrimaryContext()

        class Stream:
            handle = 1234

            def synchronize(self):
                pass

        class Event:
            def record(self, stream):
                pass

            def synchronize(self):
                pass

        self.module = types.SimpleNamespace(
            init=lambda: None, Device=Device, Context=Context, Stream=Stream, Event=Event,
            pagelocked_empty=lambda n, dtype: np.empty(n, dtype), mem_alloc=Alloc,
            memcpy_htod_async=self.htod, memcpy_dtoh_async=self.dtoh)
        self.PrimaryContext = PrimaryContext

    def view(self, address, dtype, count):
        """``count`` items of ``dtype`` at ``address`` (inside some allocation)."""
        for base, buf in self.memory.items():
            if base <= address < base + buf.nbytes:
                offset = address - base
                nbytes = count * np.dtype(dtype).itemsize
                assert offset + nbytes <= buf.nbytes, "access past the end of an allocation"
                return buf[offset:offset + nbytes].view(dtype)
        raise AssertionError(f"no allocation at {address:#x}")

    def htod(self, dest, src, stream):
        assert self.context_depth > 0, "CUDA call without a current context"
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        self.view(int(dest), np.uint8, raw.size)[:] = raw

    def dtoh(self, dest, src, stream):
        assert self.context_depth > 0, "CUDA call without a current context"
        raw = dest.view(np.uint8).reshape(-1)
        raw[:] = self.view(int(src), np.uint8, raw.size)

    def source_module(self, source, no_extern_c=False):
        """pycuda.compiler.SourceModule whose function runs the kernel's math in numpy."""
        assert 'extern "C"' in source and no_extern_c
        from test_cuda_preprocess import kernel_in_numpy  # the kernel's formula, transcribed

        fake = self

        def launch(src, src_h, src_w, dst, dst_h, dst_w, scale_y, scale_x, block, grid, stream):
            fake.kernel_calls.append(int(dst))
            frame = fake.view(int(src), np.uint8, int(src_h) * int(src_w) * 3).reshape(int(src_h), int(src_w), 3)
            out = fake.view(int(dst), np.float32, 3 * int(dst_h) * int(dst_w))
            out[:] = kernel_in_numpy(frame, (int(dst_h), int(dst_w))).reshape(-1)

        return types.SimpleNamespace(get_function=lambda name: launch)


class FakeTensorRT:
    """tensorrt: one engine with input image [-1,3,H,W] (profile 1..4) and the two outputs."""

    def __init__(self, cuda):
        self.cuda = cuda
        fake = self
        mode = types.SimpleNamespace(INPUT="input", OUTPUT="output")

        class Context:
            def __init__(self):
                self.batch, self.addresses = None, {}

            def set_input_shape(self, name, shape):
                ok = name == "image" and tuple(shape[1:]) == (3, H, W) and 1 <= shape[0] <= MAX_BATCH
                self.batch = shape[0] if ok else self.batch
                return ok

            def get_tensor_shape(self, name):
                return {"image": (self.batch, 3, H, W), "anomaly_map": (self.batch, 1, H, W),
                        "score": (self.batch,)}[name]

            def set_tensor_address(self, name, address):
                self.addresses[name] = address

            def execute_async_v3(self, stream_handle):
                assert fake.cuda.context_depth > 0 and stream_handle == 1234
                n = self.batch
                x = fake.cuda.view(self.addresses["image"], np.float32, n * 3 * H * W).reshape(n, 3, H, W)
                amap = np.tensordot(np.abs(x - 0.5), WEIGHTS, axes=([1], [0]))[:, None]  # [N,1,H,W]
                fake.cuda.view(self.addresses["anomaly_map"], np.float32, amap.size)[:] = amap.reshape(-1)
                fake.cuda.view(self.addresses["score"], np.float32, n)[:] = amap.reshape(n, -1).max(axis=1)
                return True

        class Engine:
            num_io_tensors = 3

            def get_tensor_name(self, i):
                return ("image", "anomaly_map", "score")[i]

            def get_tensor_mode(self, name):
                return mode.INPUT if name == "image" else mode.OUTPUT

            def get_tensor_shape(self, name):
                return {"image": (-1, 3, H, W), "anomaly_map": (-1, 1, H, W), "score": (-1,)}[name]

            def get_tensor_dtype(self, name):
                return "float"

            def get_tensor_profile_shape(self, name, profile):
                return [(1, 3, H, W), (1, 3, H, W), (MAX_BATCH, 3, H, W)]

            def create_execution_context(self):
                return Context()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return Engine() if data == b"fake plan" else None

        self.module = types.SimpleNamespace(
            __version__="10.3.0", Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None}),
            Runtime=Runtime, TensorIOMode=mode, nptype=lambda dtype: np.float32)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path, metadata_factory):
    """Install the fakes as tensorrt / pycuda; returns (FakeCuda, plan path)."""
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda.module
    pycuda.compiler = types.SimpleNamespace(SourceModule=cuda.source_module)
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.compiler", pycuda.compiler)
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"fake plan")
    EngineSidecar("10.3.0", "Fake GPU", "8.7", "fp32", 1, MAX_BATCH, "0" * 64, metadata_factory()).write(plan)
    return cuda, plan


def frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_runner_reuses_buffers_across_batch_sizes_and_matches_onnxruntime(fake_gpu, tiny_onnx):
    cuda, plan = fake_gpu
    x = np.random.default_rng(0).random((MAX_BATCH, 3, H, W), dtype=np.float32)
    with load_runner(tiny_onnx) as ort_runner:
        want = ort_runner.infer({"image": x})
    runner = load_runner(plan)
    assert isinstance(runner, TensorRTRunner) and runner.max_batch == MAX_BATCH
    allocations = set(cuda.memory)
    assert len(allocations) == 3  # image, anomaly_map, score: once, at the maximum batch
    for n in (1, 4, 2):
        out = runner.infer({"image": x[:n]})
        assert out["anomaly_map"].shape == (n, 1, H, W) and out["score"].shape == (n,)
        np.testing.assert_allclose(out["anomaly_map"], want["anomaly_map"][:n], atol=1e-6)
        np.testing.assert_allclose(out["score"], want["score"][:n], atol=1e-6)
    assert set(cuda.memory) == allocations and cuda.context_depth == 0
    first = runner.infer({"image": x[:1]})
    runner.infer({"image": x[1:2]})
    np.testing.assert_allclose(first["score"], want["score"][:1], atol=1e-6)  # results are copies
    with pytest.raises(BackendError, match=r"expected \[1\.\.4, 3, 24, 32\]"):
        runner.infer({"image": np.zeros((5, 3, H, W), np.float32)})
    runner.close()
    runner.close()  # idempotent
    assert cuda.memory == {} and cuda.PrimaryContext.detached and cuda.context_depth == 0
    with pytest.raises(BackendError, match="is closed"):
        runner.infer({"image": x[:1]})


def test_detector_uses_cuda_preprocessing_into_the_engine_input(fake_gpu, tiny_onnx):
    cuda, plan = fake_gpu
    batch = frames([(480, 640), (24, 32), (10, 14), (33, 47), (100, 60)])
    with Detector(tiny_onnx) as cpu:
        want = cpu.predict(batch)
    with Detector(plan, batch_size=4) as gpu:
        assert gpu.backend == "trt" and gpu.preprocess_device == "cuda"
        assert gpu.preprocess_fallback_reason is None
        got = gpu.predict(batch)  # chunks of 4 + 1
        base = gpu.runner.device_input_pointer()
    plane = 3 * H * W * 4
    assert cuda.kernel_calls == [base, base + plane, base + 2 * plane, base + 3 * plane, base]
    for g, w in zip(got, want):
        assert abs(g.score - w.score) <= 1 / 255
        assert g.anomaly_map.shape == w.anomaly_map.shape
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, atol=1 / 255)
    assert cuda.memory == {} and cuda.context_depth == 0  # everything freed on close


def test_detector_falls_back_to_cpu_preprocessing_and_says_why(fake_gpu, tiny_onnx, monkeypatch):
    cuda, plan = fake_gpu

    def no_nvcc(*args, **kwargs):
        raise OSError("nvcc not found")

    monkeypatch.setattr(sys.modules["pycuda.compiler"], "SourceModule", no_nvcc)
    with Detector(tiny_onnx) as cpu, Detector(plan) as gpu:
        assert gpu.preprocess_device == "cpu"
        assert "cannot compile the CUDA preprocessing kernel" in gpu.preprocess_fallback_reason
        f = frames([(50, 70)])[0]
        assert gpu.predict(f).score == pytest.approx(cpu.predict(f).score, abs=1e-6)
    with pytest.raises(BackendError, match="CUDA preprocessing was requested but is unavailable"):
        Detector(plan, cuda_preprocess=True)
    assert cuda.kernel_calls == []


def test_corrupt_plan_is_refused_with_the_rebuild_command(fake_gpu):
    cuda, plan = fake_gpu
    plan.write_bytes(b"garbage")
    with pytest.raises(BackendError, match=r"could not deserialize .*rd-export model\.onnx --engine"):
        load_runner(plan)
    assert cuda.context_depth == 0 and cuda.PrimaryContext.detached
