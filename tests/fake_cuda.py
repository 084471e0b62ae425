"""A pycuda.driver (and the two libcuda context calls) that behaves like CUDA where our code can go wrong.

Device memory is numpy bytes at fake addresses, filled with 0xFF (NaN as float32) so a value
nobody computed shows. Behaviour taken from CUDA and pycuda, not from our code's assumptions:

- Asynchronous work is deferred: ``memcpy_*_async``, kernel launches (and TensorRT's
  ``execute_async_v3`` in the TensorRT fake) queue on their stream and run at
  ``stream.synchronize()`` or at the ``synchronize()`` of an event recorded after them, reading
  their source memory then (cuMemcpyHtoDAsync reads page-locked memory when it executes).
  A missing synchronize leaves NaNs.
- Contexts follow pycuda's cuda.hpp: ``push()`` makes a context current (popping pycuda's
  previous one from the driver stack first), ``Context.pop()`` restores the previous one,
  ``detach()`` of a context that is not current pushes it and calls cuDevicePrimaryCtxRelease,
  which "does not pop the context from stack in any circumstances" (CUDA driver API,
  cuDevicePrimaryCtxRelease) -- so the driver stack and the retain counts are checked
  separately (``driver_stack``, ``retained``).
- Kernels compiled from source (pycuda.compiler.SourceModule) run the real CUDA source,
  compiled for the CPU by kernel_harness, over the fake device memory.
- Threads, as in CUDA and pycuda 2025.1 (cuda.hpp): the context stack is per thread; a
  context remembers the thread that created it; streams, events, device and page-locked
  memory and modules need a current context to be created (``Event()`` and
  ``pagelocked_empty`` too) and belong to it. Freeing one (explicitly, or when Python drops
  it) where its context is not current needs to activate the context, which pycuda refuses
  outside the creating thread: an explicit ``free()`` raises, a dropped object warns
  ("cannot activate out-of-thread context") and leaks. ``detach()`` from another thread of a
  context that is not current silently skips the release ("leaked out-of-thread context").
  ``leaks`` lists what leaked.
"""

from __future__ import annotations

import threading
import types
import warnings
import weakref
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from kernel_harness import compile_kernel

# (name, compute capability, SMs, MiB) per device; two differ only in SMs (as Orin NX and AGX do).
DEVICES = (("Fake GPU", (8, 7), 16, 8192), ("Fake GPU", (8, 7), 8, 4096))


class FakeCuda:
    """Install ``self.module`` as pycuda.driver and ``self.compiler`` as pycuda.compiler."""

    def __init__(self, devices=DEVICES, fp_contract: str = "off") -> None:
        self.devices = devices
        self.fp_contract = fp_contract  # kernel_harness.FP_CONTRACT: "fast" fuses FMAs as nvcc does
        self.memory: Dict[int, np.ndarray] = {}
        self.next_address = 0x10000
        self._stacks: Dict[int, Tuple[List[int], List["object"]]] = {}  # thread -> (driver, pycuda)
        self.retained: Dict[int, int] = {}  # device -> primary context retain count
        self.leaks: List[str] = []  # what pycuda would have leaked (out-of-thread frees/detach)
        self.kernel_calls: List[Dict[str, int]] = []
        self.streams: Dict[int, "object"] = {}
        self.fail_launch: Optional[str] = None  # set by a test: every kernel launch raises this
        self.module = self._driver_module()
        self.compiler = types.SimpleNamespace(SourceModule=self.source_module)
        self.libcuda = _FakeLibcuda(self)

    # --- contexts --------------------------------------------------------------------------

    def _thread_stacks(self) -> Tuple[List[int], List["object"]]:
        return self._stacks.setdefault(threading.get_ident(), ([], []))

    @property
    def driver_stack(self) -> List[int]:
        """CUcontext handles, as the driver sees the calling thread."""
        return self._thread_stacks()[0]

    @property
    def pycuda_stack(self) -> List["object"]:
        """pycuda's context_stack of the calling thread."""
        return self._thread_stacks()[1]

    def threads_with_a_context(self) -> List[int]:
        """Threads whose driver stack is not empty (cuCtxGetCurrent would not return NULL)."""
        return [thread for thread, (driver, _) in self._stacks.items() if driver]

    def current_context(self) -> Optional["object"]:
        return self.pycuda_stack[-1] if self.pycuda_stack else None

    def owned(
        self, obj: object, what: str, release: Callable[[], None] = lambda: None
    ) -> Tuple["object", weakref.finalize]:
        """Make ``obj`` depend on the current context (pycuda's context_dependent): when Python
        drops it, it is released as pycuda would, or warned about and leaked. Returns the
        context and the finalizer (detach it once the object is freed explicitly)."""
        self.require_context()
        ctx = self.current_context()
        return ctx, weakref.finalize(obj, self._cleanup, ctx, what, release)

    def can_activate(self, ctx: "object", what: str) -> bool:
        """scoped_context_activation: current, or the creating thread may push it."""
        if self.current_context() is ctx or not ctx.valid:
            return True  # a dead context's objects went with it
        return threading.get_ident() == ctx.thread

    def _cleanup(self, ctx: "object", what: str, release: Callable[[], None]) -> None:
        if self.can_activate(ctx, what):
            release()
            return
        self.leaks.append(what)
        warnings.warn(
            f"PyCUDA WARNING: a clean-up operation failed (dead context maybe?)\n"
            f"cannot activate out-of-thread context ({what})",
            RuntimeWarning,
            stacklevel=1,
        )

    def current_device(self) -> Optional[int]:
        """Device of the context current in the driver, None when none is."""
        return self.driver_stack[-1] - 0x100 if self.driver_stack else None

    def require_context(self) -> None:
        device = self.current_device()
        assert device is not None, "CUDA call without a current context"
        assert self.retained.get(device, 0) > 0, "CUDA call in a released primary context"

    def _driver_module(self) -> types.SimpleNamespace:
        fake = self

        class Error(Exception):
            """pycuda.driver.Error"""

        class LaunchError(Error):
            pass

        class Context:
            def __init__(self, device: int) -> None:
                self.device, self.valid = device, True
                self.handle = 0x100 + device
                self.thread = threading.get_ident()  # cuda.hpp context::m_thread

            def push(self) -> None:  # cuda.hpp context_push
                assert self.valid, "cannot activate dead context"
                if fake.pycuda_stack:
                    fake.driver_stack.pop()  # prepare_context_switch
                fake.driver_stack.append(self.handle)
                fake.pycuda_stack.append(self)

            @staticmethod
            def pop() -> None:  # cuda.hpp context::pop
                if fake.pycuda_stack:
                    fake.driver_stack.pop()
                if not fake.pycuda_stack:
                    raise Error("context::pop failed: cannot pop non-current context")
                fake.pycuda_stack.pop()
                if fake.pycuda_stack:
                    fake.driver_stack.append(fake.pycuda_stack[-1].handle)

            def detach(self) -> None:  # cuda.hpp context::detach for a primary_context
                assert self.valid, "cannot detach from invalid context"
                active = bool(fake.pycuda_stack) and fake.pycuda_stack[-1] is self
                if not active and threading.get_ident() != self.thread:
                    # "In all likelihood, this context's managing thread has exited": nothing
                    # is released, silently.
                    fake.leaks.append(f"primary context of device {self.device} (detach from another thread)")
                    self.valid = False
                    return
                if not active:
                    fake.driver_stack.append(self.handle)  # cuCtxPushCurrent, then release: no pop
                fake.retained[self.device] -= 1
                self.valid = False
                if active:
                    while fake.pycuda_stack and not fake.pycuda_stack[-1].valid:
                        fake.pycuda_stack.pop()
                    if fake.pycuda_stack:
                        fake.driver_stack.append(fake.pycuda_stack[-1].handle)

        class Device:
            @staticmethod
            def count() -> int:
                return len(fake.devices)

            def __init__(self, index: int) -> None:
                assert 0 <= index < len(fake.devices), "invalid device ordinal"
                self.index = index

            def name(self) -> str:
                return fake.devices[self.index][0]

            def compute_capability(self) -> Tuple[int, int]:
                return fake.devices[self.index][1]

            def get_attribute(self, attribute: str) -> int:
                assert attribute == "MULTIPROCESSOR_COUNT", attribute
                return fake.devices[self.index][2]

            def total_memory(self) -> int:
                return fake.devices[self.index][3] << 20

            def retain_primary_context(self) -> Context:
                fake.retained[self.index] = fake.retained.get(self.index, 0) + 1
                return Context(self.index)

        class Stream:
            def __init__(self, flags: int = 0) -> None:
                fake.owned(self, "stream")
                self.flags, self.queue = flags, []
                self.handle = 0x5000 + len(fake.streams)
                fake.streams[self.handle] = self

            def enqueue(self, op: Callable[[], None]) -> None:
                self.queue.append(op)

            def synchronize(self) -> None:
                while self.queue:
                    self.queue.pop(0)()

        class Event:
            def __init__(self) -> None:
                fake.owned(self, "event")  # cuEventCreate needs a current context
                self.stream, self.done = None, True

            def record(self, stream: Stream) -> None:
                self.stream, self.done = stream, False
                stream.enqueue(lambda: setattr(self, "done", True))

            def synchronize(self) -> None:  # runs the stream up to this event
                while not self.done:
                    self.stream.queue.pop(0)()

        class Alloc:
            def __init__(self, nbytes: int) -> None:
                self.address = address = fake.next_address
                self.ctx, self._finalizer = fake.owned(
                    self, "device memory", lambda: fake.memory.pop(address, None)
                )
                fake.next_address += nbytes + 0x100
                fake.memory[self.address] = np.full(nbytes, 0xFF, np.uint8)

            def __int__(self) -> int:
                return self.address

            def free(self) -> None:
                if not fake.can_activate(self.ctx, "device memory"):
                    raise Error("cannot activate out-of-thread context")
                if fake.current_context() is not self.ctx:
                    fake.require_context()
                del fake.memory[self.address]
                self._finalizer.detach()  # pycuda: a freed allocation has nothing left to release

        def htod(dest, src, stream):
            fake.require_context()
            stream.enqueue(
                lambda: fake.write(int(dest), np.ascontiguousarray(src).view(np.uint8).reshape(-1))
            )

        def dtoh(dest, src, stream):
            fake.require_context()
            raw = dest.view(np.uint8).reshape(-1)
            stream.enqueue(lambda: raw.__setitem__(slice(None), fake.view(int(src), np.uint8, raw.size)))

        def pagelocked_empty(n, dtype):
            buf = np.empty(n, dtype)
            fake.owned(buf, "page-locked memory")  # cuMemHostAlloc needs a current context
            buf.view(np.uint8)[...] = 0xFF  # NaN as float32: stale values show
            return buf

        return types.SimpleNamespace(
            init=lambda: None,
            Device=Device,
            Context=Context,
            Stream=Stream,
            Event=Event,
            Error=Error,
            LaunchError=LaunchError,
            device_attribute=types.SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT"),
            pagelocked_empty=pagelocked_empty,
            mem_alloc=Alloc,
            memcpy_htod_async=htod,
            memcpy_dtoh_async=dtoh,
        )

    # --- memory ----------------------------------------------------------------------------

    def view(self, address: int, dtype, count: int) -> np.ndarray:
        """``count`` items of ``dtype`` at ``address`` (inside some allocation)."""
        for base, buf in self.memory.items():
            if base <= address < base + buf.nbytes:
                offset = address - base
                nbytes = count * np.dtype(dtype).itemsize
                assert offset + nbytes <= buf.nbytes, "access past the end of an allocation"
                return buf[offset : offset + nbytes].view(dtype)
        raise AssertionError(f"no allocation at {address:#x}")

    def write(self, address: int, raw: np.ndarray) -> None:
        self.view(address, np.uint8, raw.size)[:] = raw

    def host_address(self, address: int) -> int:
        """The real address behind a fake device address (for the compiled kernel)."""
        for base, buf in self.memory.items():
            if base <= address < base + buf.nbytes:
                return buf.ctypes.data + (address - base)
        raise AssertionError(f"kernel argument {address:#x} points into no allocation")

    # --- kernels ---------------------------------------------------------------------------

    def source_module(self, source: str, no_extern_c: bool = False) -> types.SimpleNamespace:
        """pycuda.compiler.SourceModule: the real source, compiled for the CPU."""
        assert no_extern_c, 'the kernels are extern "C"; pycuda would wrap them again'
        fake = self
        module = _Module()
        fake.owned(module, "module")  # cuModuleLoadData needs a current context

        def get_function(name: str) -> Callable[..., None]:
            kernel = compile_kernel(source, name, fp_contract=fake.fp_contract)

            def launch(*args, block, grid, stream):
                fake.require_context()
                if fake.fail_launch:
                    raise fake.module.LaunchError(fake.fail_launch)
                fake.kernel_calls.append(
                    {p: int(a) for (_, p), a, ptr in zip(kernel.params, args, kernel.pointer) if ptr}
                )
                values = [fake.host_address(int(a)) if ptr else a for a, ptr in zip(args, kernel.pointer)]
                stream.enqueue(lambda: kernel(grid, block, *values))

            return launch

        module.get_function = get_function
        return module


class _Module:
    """pycuda.driver.Module (weak-referenceable, unlike a SimpleNamespace)."""

    get_function: Callable[[str], Callable[..., None]]


class _FakeLibcuda:
    """cuCtxGetCurrent / cuCtxPopCurrent_v2 over the fake driver stack (ctypes.byref arguments)."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda

    def cuCtxGetCurrent(self, ref) -> int:
        ref._obj.value = self.cuda.driver_stack[-1] if self.cuda.driver_stack else None
        return 0

    def cuCtxPopCurrent_v2(self, ref) -> int:
        if not self.cuda.driver_stack:
            return 201  # CUDA_ERROR_INVALID_CONTEXT
        ref._obj.value = self.cuda.driver_stack.pop()
        return 0


def install(monkeypatch, cuda: FakeCuda) -> None:
    """Make ``cuda`` the pycuda (and libcuda) the runtime imports."""
    import sys

    from rd_edge.runtime.backends.trt import util

    pycuda = types.ModuleType("pycuda")
    pycuda.driver, pycuda.compiler = cuda.module, cuda.compiler
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.compiler", cuda.compiler)
    monkeypatch.setattr(util, "_libcuda", cuda.libcuda)
