"""A CuPy program for the ioctl capture: device arrays, a managed-memory pool, advice, prefetch."""

import ctypes

import cupy as cp

try:
    _mark = ctypes.CDLL(None).uvmlab_mark
    _mark.argtypes = [ctypes.c_char_p]
except AttributeError:  # run without the shim

    def _mark(label: bytes) -> None:
        return None


def mark(label: str) -> None:
    _mark(label.encode())


mark("cupy: device array + elementwise")
x = cp.arange(1 << 20, dtype=cp.float32)
y = (x * 2).sum()
mark("cupy: managed pool")
cp.cuda.set_allocator(cp.cuda.MemoryPool(cp.cuda.malloc_managed).malloc)
m = cp.ones(4 << 20, dtype=cp.float32)  # 16 MiB managed
rt = cp.cuda.runtime
mark("cupy: advise + prefetch")
try:
    rt.memAdvise(m.data.ptr, m.nbytes, 1, 0)  # cudaMemAdviseSetReadMostly
    rt.memPrefetchAsync(m.data.ptr, m.nbytes, 0, 0)
except Exception as exc:  # API differences between CUDA versions
    print("cupy advise/prefetch:", type(exc).__name__, exc)
mark("cupy: reduce managed")
z = float((m * y).sum())
cp.cuda.Device().synchronize()
mark("exit")
print("cupy_program:", z)
