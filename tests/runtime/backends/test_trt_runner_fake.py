"""The TensorRT runner and the CUDA preprocessing glue, driven through fake tensorrt/pycuda.

No GPU here. The fakes (tests/fake_cuda.py for pycuda/libcuda, FakeTensorRT below) behave like
TensorRT and CUDA where our code can go wrong, each behaviour taken from TensorRT's
NvInferRuntime.h (8.5-10.x, name-based I/O) and the CUDA/pycuda sources, not from our code:

- ``IExecutionContext::setInputShape``: "Each dimension must agree with the network dimension
  unless the latter was -1" and lie inside the optimization profile; it returns false
  otherwise ("\\return True on success, false if ... some other error occurred").
- ``setTensorAddress`` and ``enqueueV3`` return bool ("\\return True if the kernels were
  enqueued successfully"); the fake returns False for an unknown tensor name.
- ``enqueueV3`` only *enqueues* on the stream: the fake computes the outputs when the stream
  (or an event after it) is synchronized, so a missing synchronize reads NaNs.
- Static engines (``rd-export --batch N``) have input shape [N,3,H,W]; dynamic ones [-1,3,H,W]
  with profile 0 = (1, 1, MAX_BATCH).
The CUDA preprocessing kernel is the real KERNEL_SOURCE, compiled for the CPU (kernel_harness).
"""

import gc
import threading
import types
import warnings

import numpy as np
import pytest
from fake_cuda import FakeCuda, install

from rd_edge.core.errors import BackendError
from rd_edge.core.sidecar import EngineSidecar
from rd_edge.runtime import Detector, load_runner
from rd_edge.runtime.backends.trt import TensorRTRunner
from rd_edge.runtime.backends.trt.util import CU_STREAM_NON_BLOCKING
from rd_edge.runtime.preprocess_choice import PreprocessState

H, W, MAX_BATCH = 24, 32, 4
WEIGHTS = np.array([0.5, 0.3, 0.2], np.float32)  # the stand-in model of conftest.py
NAMES = ("image", "anomaly_map", "score")


class FakeTensorRT:
    """tensorrt: an engine with input image [N or -1,3,H,W] and the two outputs of the stand-in model."""

    def __init__(self, cuda: FakeCuda, static_batch=None, io="float"):
        # io: the engine's I/O type, "float" or "half" (a plan built with fp16 I/O tensors)
        self.cuda, self.static_batch = cuda, static_batch
        self.dtype = {"float": np.float32, "half": np.float16}[io]
        fake = self
        mode = types.SimpleNamespace(INPUT="input", OUTPUT="output")

        class Context:
            def __init__(self):
                self.batch = static_batch  # a static engine's shapes are known from the start
                self.addresses = {}

            def set_input_shape(self, name, shape):
                network = Engine().get_tensor_shape("image")
                agrees = (
                    name == "image"
                    and len(shape) == 4
                    and all(want == -1 or want == got for want, got in zip(network, shape))
                )
                in_profile = static_batch is not None or (len(shape) == 4 and 1 <= shape[0] <= MAX_BATCH)
                if not (agrees and in_profile):
                    return False
                self.batch = shape[0]
                return True

            def get_tensor_shape(self, name):
                n = -1 if self.batch is None else self.batch
                return {"image": (n, 3, H, W), "anomaly_map": (n, 1, H, W), "score": (n,)}[name]

            def set_tensor_address(self, name, address):
                if name not in NAMES:
                    return False
                self.addresses[name] = int(address)
                return True

            def execute_async_v3(self, stream_handle):
                fake.cuda.require_context()
                if self.batch is None or set(self.addresses) != set(NAMES):
                    return False  # shapes or addresses not all set
                n, addresses = self.batch, dict(self.addresses)
                fake.cuda.streams[stream_handle].enqueue(lambda: fake.run_model(n, addresses))
                return True

        class Engine:
            num_io_tensors = 3

            def get_tensor_name(self, i):
                return NAMES[i]

            def get_tensor_mode(self, name):
                return mode.INPUT if name == "image" else mode.OUTPUT

            def get_tensor_shape(self, name):
                n = static_batch or -1
                return {"image": (n, 3, H, W), "anomaly_map": (n, 1, H, W), "score": (n,)}[name]

            def get_tensor_dtype(self, name):
                return io

            def get_tensor_profile_shape(self, name, profile):
                n = static_batch
                return [(n or 1, 3, H, W), (n or 1, 3, H, W), (n or MAX_BATCH, 3, H, W)]

            def create_execution_context(self):
                return Context()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                fake.cuda.require_context()
                return Engine() if data == b"fake plan" else None

        self.module = types.SimpleNamespace(
            __version__="10.3.0",
            Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None}),
            Runtime=Runtime,
            TensorIOMode=mode,
            nptype=lambda dtype: {"float": np.float32, "half": np.float16}[dtype],
        )

    def run_model(self, n, addresses):
        """The stand-in model on device memory (when the stream runs it)."""
        x = (
            self.cuda.view(addresses["image"], self.dtype, n * 3 * H * W)
            .reshape(n, 3, H, W)
            .astype(np.float32)
        )
        amap = np.tensordot(np.abs(x - 0.5), WEIGHTS, axes=([1], [0]))[:, None]  # [N,1,H,W]
        self.cuda.view(addresses["anomaly_map"], self.dtype, amap.size)[:] = amap.reshape(-1)
        self.cuda.view(addresses["score"], self.dtype, n)[:] = amap.reshape(n, -1).max(axis=1)


@pytest.fixture(params=[None, MAX_BATCH], ids=["dynamic", "static"])
def fake_gpu(request, monkeypatch, tmp_path, metadata_factory):
    """Install the fakes as tensorrt / pycuda for a dynamic or a static-batch engine;
    returns (FakeCuda, plan path)."""
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda, static_batch=request.param)
    install(monkeypatch, cuda)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt.module)
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"fake plan")
    batches = (MAX_BATCH, MAX_BATCH) if request.param else (1, MAX_BATCH)
    EngineSidecar(
        "10.3.0",
        "Fake GPU",
        "8.7",
        "fp32",
        *batches,
        "0" * 64,
        metadata_factory(),
        sm_count=16,
        total_memory_mb=8192,
    ).write(plan)
    return cuda, plan


def frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def nothing_current(cuda):
    """Every push popped and every retain released: the thread is as before the runner; and
    nothing leaked the way pycuda leaks out-of-thread frees."""
    return (
        cuda.driver_stack == []
        and cuda.pycuda_stack == []
        and all(v == 0 for v in cuda.retained.values())
        and cuda.leaks == []
        and cuda.threads_with_a_context() == []
    )


def test_runner_runs_every_batch_size_and_matches_onnxruntime(fake_gpu, tiny_onnx):
    # Finding 1: a static engine (--batch 4) must run a single frame and partial batches too.
    cuda, plan = fake_gpu
    x = np.random.default_rng(0).random((MAX_BATCH, 3, H, W), dtype=np.float32)
    with load_runner(tiny_onnx) as ort_runner:
        want = ort_runner.infer({"image": x})
    runner = load_runner(plan)
    assert isinstance(runner, TensorRTRunner) and runner.max_batch == MAX_BATCH
    allocations = set(cuda.memory)
    assert len(allocations) == 3  # image, anomaly_map, score: once, at the maximum batch
    for n in (1, 4, 2, 3):
        out = runner.infer({"image": x[:n]})
        assert out["anomaly_map"].shape == (n, 1, H, W) and out["score"].shape == (n,)
        np.testing.assert_allclose(out["anomaly_map"], want["anomaly_map"][:n], atol=1e-6)
        np.testing.assert_allclose(out["score"], want["score"][:n], atol=1e-6)
    assert set(cuda.memory) == allocations and cuda.driver_stack == []
    first = runner.infer({"image": x[:1]})
    runner.infer({"image": x[1:2]})
    np.testing.assert_allclose(first["score"], want["score"][:1], atol=1e-6)  # results are copies
    with pytest.raises(BackendError, match=r"expected \[1\.\.4, 3, 24, 32\]"):
        runner.infer({"image": np.zeros((5, 3, H, W), np.float32)})
    runner.close()
    runner.close()  # idempotent
    assert cuda.memory == {}
    with pytest.raises(BackendError, match="is closed"):
        runner.infer({"image": x[:1]})


def test_close_leaves_no_context_current_and_the_stream_is_non_blocking(fake_gpu):
    # Finding 6: pycuda's detach() of a non-current primary context pushes it and never pops.
    cuda, plan = fake_gpu
    runner = load_runner(plan)
    assert runner.stream.flags == CU_STREAM_NON_BLOCKING  # as the C++ backend's cudaStreamNonBlocking
    assert cuda.retained == {0: 1} and cuda.driver_stack == []
    runner.close()
    assert nothing_current(cuda), (cuda.driver_stack, cuda.retained)


def _in_thread(fn):
    """fn() in a new thread (as the pipeline's stage threads call the Detector); its exception re-raised."""
    box = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if "error" in box:
        raise box["error"]


def test_runner_closed_from_another_thread_releases_everything_without_warnings(fake_gpu):
    # Issue 22: pycuda's detach() from a thread that did not create the context silently skips
    # the release, and objects freed there warn and leak. close() now hands the work to the
    # context's owner thread.
    cuda, plan = fake_gpu
    x = np.random.default_rng(0).random((2, 3, H, W), dtype=np.float32)
    runner = load_runner(plan)
    _in_thread(lambda: runner.infer({"image": x}))  # inference from another thread: context pushed there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _in_thread(runner.close)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert cuda.memory == {} and nothing_current(cuda), (cuda.leaks, cuda.retained)


def test_detector_with_cuda_preprocessing_closed_from_another_thread(fake_gpu):
    cuda, plan = fake_gpu
    detector = Detector(plan, batch_size=2)
    assert detector.preprocess_device == "cuda", detector.preprocess_fallback_reason
    results = []
    _in_thread(lambda: results.extend(detector.predict(frames([(40, 50), (24, 32)]))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _in_thread(detector.close)
        gc.collect()
    assert len(results) == 2 and [str(w.message) for w in caught] == []
    assert cuda.memory == {} and nothing_current(cuda), (cuda.leaks, cuda.retained)


def test_the_fake_follows_pycuda_on_threads_and_current_contexts(monkeypatch):
    """What the two tests above rely on: pycuda's rules, not ours (cuda.hpp, pycuda 2025.1)."""
    cuda = FakeCuda()
    with pytest.raises(AssertionError, match="without a current context"):
        cuda.module.Event()  # cuEventCreate needs a current context
    with pytest.raises(AssertionError, match="without a current context"):
        cuda.module.pagelocked_empty(4, np.float32)  # so does cuMemHostAlloc
    ctx = cuda.module.Device(0).retain_primary_context()
    ctx.push()
    event = cuda.module.Event()
    cuda.module.Context.pop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _in_thread(lambda: None)
        holder = [event]
        del event
        _in_thread(holder.clear)  # dropped in another thread, context not current there
    assert "cannot activate out-of-thread context (event)" in str(caught[-1].message)
    _in_thread(ctx.detach)  # not current, another thread: pycuda skips the release
    assert cuda.retained == {0: 1} and cuda.leaks[-1].startswith("primary context of device 0")


def test_engine_with_fp16_io_takes_and_gives_float32(monkeypatch, tmp_path, metadata_factory, tiny_onnx):
    # Issue 22: the fake engine was float32-only, so the fp16-I/O path never ran.
    cuda = FakeCuda()
    install(monkeypatch, cuda)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", FakeTensorRT(cuda, io="half").module)
    plan = tmp_path / "half.engine"
    plan.write_bytes(b"fake plan")
    EngineSidecar(
        "10.3.0",
        "Fake GPU",
        "8.7",
        "fp16",
        1,
        MAX_BATCH,
        "0" * 64,
        metadata_factory(),
        sm_count=16,
        total_memory_mb=8192,
    ).write(plan)
    x = np.random.default_rng(3).random((3, 3, H, W), dtype=np.float32)
    with load_runner(tiny_onnx) as ort_runner:
        want = ort_runner.infer({"image": x})
    with Detector(plan, batch_size=2) as detector:
        runner = detector.runner
        assert runner.input_dtype == np.float16
        # The kernel writes float32: the Detector preprocesses on the CPU and says why.
        assert detector.preprocess_device == "cpu"
        assert "engine input is float16" in detector.preprocess_fallback_reason
        out = runner.infer({"image": x})  # staged as float16, outputs back as float32
        predictions = detector.predict(frames([(24, 32)]))
    assert out["anomaly_map"].dtype == np.float32 and out["score"].dtype == np.float32
    # fp16 rounding of input and outputs: relative 2^-11 on values below 1
    np.testing.assert_allclose(out["anomaly_map"], want["anomaly_map"], atol=2e-3)
    np.testing.assert_allclose(out["score"], want["score"], atol=2e-3)
    assert np.isfinite(predictions[0].score)
    assert cuda.memory == {} and nothing_current(cuda)


def test_refused_tensor_address_is_an_error(fake_gpu, monkeypatch):
    # Finding 6: setTensorAddress returns false (e.g. a misaligned address); it was ignored.
    cuda, plan = fake_gpu
    import tensorrt

    real = tensorrt.Runtime.deserialize_cuda_engine

    def engine_refusing_addresses(self, data):
        engine = real(self, data)
        make = engine.create_execution_context

        def context():
            ctx = make()
            ctx.set_tensor_address = lambda name, address: False
            return ctx

        engine.create_execution_context = context
        return engine

    monkeypatch.setattr(tensorrt.Runtime, "deserialize_cuda_engine", engine_refusing_addresses)
    with pytest.raises(BackendError, match="refused the device address of tensor 'image'"):
        load_runner(plan)
    assert nothing_current(cuda) and cuda.memory == {}


def test_detector_uses_cuda_preprocessing_into_the_engine_input(fake_gpu, tiny_onnx):
    cuda, plan = fake_gpu
    batch = frames([(480, 640), (24, 32), (10, 14), (33, 47), (100, 60)])
    with Detector(tiny_onnx) as cpu:
        want = cpu.predict(batch)
    with Detector(plan, batch_size=4) as gpu:
        assert gpu.backend == "trt" and gpu.preprocess_device == "cuda", gpu.preprocess_fallback_reason
        assert gpu.preprocess_fallback_reason is None
        got = gpu.predict(batch)  # chunks of 4 + 1
        single = gpu.predict(batch[2])  # one frame through a (possibly static) batch-4 engine
        base = gpu.runner.device_input_pointer()
    plane = 3 * H * W * 4
    assert [c["dst"] for c in cuda.kernel_calls] == [
        base,
        base + plane,
        base + 2 * plane,
        base + 3 * plane,
        base,
        base,
    ]
    for g, w in zip(got + [single], want + [want[2]]):
        assert abs(g.score - w.score) <= 1 / 255
        assert g.anomaly_map.shape == w.anomaly_map.shape
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, atol=1 / 255)
    assert cuda.memory == {} and nothing_current(cuda)  # everything freed on close


def test_detector_falls_back_to_cpu_preprocessing_and_says_why(fake_gpu, tiny_onnx, monkeypatch):
    cuda, plan = fake_gpu

    def no_nvcc(*args, **kwargs):
        raise OSError("nvcc not found")

    monkeypatch.setattr(cuda.compiler, "SourceModule", no_nvcc)
    with Detector(tiny_onnx) as cpu, Detector(plan) as gpu:
        assert gpu.preprocess_device == "cpu"
        assert "cannot compile the CUDA preprocessing kernel" in gpu.preprocess_fallback_reason
        f = frames([(50, 70)])[0]
        assert gpu.predict(f).score == pytest.approx(cpu.predict(f).score, abs=1e-6)
    with pytest.raises(BackendError, match="CUDA preprocessing was requested but is unavailable"):
        Detector(plan, cuda_preprocess=True)
    assert cuda.kernel_calls == []


def test_cuda_error_while_predicting_falls_back_to_the_cpu(fake_gpu, tiny_onnx):
    # Finding 6: a pycuda error in CudaPreprocessor aborted the Detector.
    cuda, plan = fake_gpu
    f = frames([(50, 70)])[0]
    with Detector(tiny_onnx) as cpu, Detector(plan) as gpu:
        assert gpu.preprocess_device == "cuda" and gpu._pre.state is PreprocessState.CUDA
        cuda.fail_launch = "cuLaunchKernel failed: too many resources requested for launch"
        with pytest.warns(RuntimeWarning, match="too many resources.*CPU from now on"):
            got = gpu.predict(f)
        assert gpu.preprocess_device == "cpu" and "too many resources" in gpu.preprocess_fallback_reason
        assert gpu._pre.state is PreprocessState.FELL_BACK  # the one place that knows
        assert got.score == pytest.approx(cpu.predict(f).score, abs=1e-6)
    assert gpu._pre.state is PreprocessState.CLOSED
    with Detector(plan, cuda_preprocess=True) as strict:
        with pytest.raises(BackendError, match="too many resources"):
            strict.predict(f)
    assert nothing_current(cuda) and cuda.memory == {}


def test_corrupt_plan_is_refused_with_the_rebuild_command(fake_gpu):
    cuda, plan = fake_gpu
    plan.write_bytes(b"garbage")
    with pytest.raises(BackendError, match=r"could not deserialize .*rd-export model\.onnx --engine"):
        load_runner(plan)
    assert nothing_current(cuda)


def test_the_pipeline_runs_cuda_preprocessing_and_the_engine_from_its_inference_thread(
    fake_gpu, tiny_onnx, tmp_path
):
    """Issue 14: with CUDA preprocessing the kernels run inside Detector.infer, in the pipeline's
    inference thread (the runner's context pushed there); two sources share batches."""
    import cv2

    from rd_edge.runtime.pipeline import Pipeline
    from rd_edge.runtime.sinks import Sink
    from rd_edge.runtime.sources import open_source

    class Keep(Sink):
        def __init__(self):
            self.results = []

        def write(self, result):
            self.results.append(result)

    def clip(name, n, size, seed):
        writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, size[::-1])
        for f in frames([size] * n, seed):
            writer.write(f)
        writer.release()
        return open_source(str(tmp_path / name))

    cuda, plan = fake_gpu
    keep = Keep()
    with Detector(plan, batch_size=MAX_BATCH) as gpu, Detector(tiny_onnx) as cpu:
        assert gpu.preprocess_device == "cuda"
        with clip("a.avi", 6, (50, 70), 1) as a, clip("b.avi", 5, (24, 32), 2) as b:
            summary = Pipeline(gpu, [a, b], [keep]).run()
        assert summary.errors == 0 and summary.frames == 11 and gpu.preprocess_device == "cuda"
        assert [r.index for r in keep.results if r.stream == "b"] == list(range(5))
        for r in keep.results:  # the frame's own result, not a neighbour's in the shared buffer
            assert r.prediction.score == gpu.predict(r.item.frame).score
            assert r.prediction.score == pytest.approx(
                cpu.predict(r.item.frame).score, abs=2e-3
            )  # kernel vs CPU
    assert nothing_current(cuda) and cuda.memory == {}


def _fake_plan(monkeypatch, tmp_path, metadata, static_batch, version="10.3.0"):
    cuda = FakeCuda()
    install(monkeypatch, cuda)
    monkeypatch.setitem(
        __import__("sys").modules, "tensorrt", FakeTensorRT(cuda, static_batch=static_batch).module
    )
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"fake plan")
    batches = (static_batch, static_batch) if static_batch else (1, MAX_BATCH)
    EngineSidecar(
        version, "Fake GPU", "8.7", "fp32", *batches, "0" * 64, metadata, sm_count=16, total_memory_mb=8192
    ).write(plan)
    return plan


def test_a_static_engine_of_batch_1_is_fixed_at_1(monkeypatch, tmp_path, metadata_factory):
    """rd-export --batch 1: the engine's input is [1,3,H,W] (static), not a dynamic profile."""
    runner = load_runner(_fake_plan(monkeypatch, tmp_path, metadata_factory(), 1))
    try:
        assert runner.max_batch == 1
        x = np.random.default_rng(1).random((1, 3, H, W), dtype=np.float32)
        assert runner.infer({"image": x})["score"].shape == (1,)
    finally:
        runner.close()


def test_a_plan_of_another_minor_version_names_the_package_that_built_it(
    monkeypatch, tmp_path, metadata_factory
):
    """Built by TensorRT 10.2.0, running 10.3.0 (minor differs): refused, and the hint installs
    the plan's version (10.2.0), not the running one."""
    plan = _fake_plan(monkeypatch, tmp_path, metadata_factory(), None, version="10.2.0")
    with pytest.raises(BackendError, match=r"TensorRT 10\.2\.0 \(running 10\.3\.0\)") as refused:
        load_runner(plan)
    assert "==10.2.0" in str(refused.value) and "==10.3.0" not in str(refused.value)
