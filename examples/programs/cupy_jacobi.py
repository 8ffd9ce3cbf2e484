"""A CuPy program in the managed-memory style: fill on the CPU, iterate on the GPU, read back.

Run it as it is (CuPy's default allocator: device memory) or under uvmlab's capture, which makes
CuPy allocate managed memory without a change here:

    uvmlab capture -o jacobi.npz -- python examples/programs/cupy_jacobi.py

The host side touches the arrays through NumPy views of their (managed) memory, as a C program
would through the pointer cudaMallocManaged returned; under CuPy's default allocator those views
are not valid, so the program then copies instead.
"""

import ctypes
import sys

import cupy as cp
import numpy as np

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4096  # grid N x N float32 (N=4096: 64 MiB)
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def host(a: cp.ndarray) -> np.ndarray | None:
    """A NumPy view of a managed CuPy array, or None when it lives in device memory."""
    attrs = cp.cuda.runtime.pointerGetAttributes(a.data.ptr)
    if attrs.type != 3:  # cudaMemoryTypeManaged
        return None
    buf = (ctypes.c_char * a.nbytes).from_address(a.data.ptr)
    return np.frombuffer(buf, dtype=a.dtype).reshape(a.shape)


grid = cp.empty((N, N), dtype=cp.float32)
view = host(grid)
rng = np.random.default_rng(0)
init = rng.random((N, N), dtype=np.float32)
if view is not None:
    view[:] = init  # the CPU writes every page first: it owns the data when the GPU starts
else:
    grid.set(init)

for step in range(STEPS):
    nxt = grid.copy()
    nxt[1:-1, 1:-1] = 0.25 * (grid[:-2, 1:-1] + grid[2:, 1:-1] + grid[1:-1, :-2] + grid[1:-1, 2:])
    if step % 5 == 4:
        print(f"step {step + 1}: change {float(cp.abs(nxt - grid).max()):.5f}")
    grid = nxt
cp.cuda.Device().synchronize()

view = host(grid)
total = float(view.sum(dtype=np.float64)) if view is not None else float(grid.sum())
print(f"mean {total / N / N:.6f}")
