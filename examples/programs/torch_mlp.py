"""A small PyTorch training loop whose input batches the CPU writes into GPU-visible memory.

Under ``uvmlab capture --managed torch`` every CUDA tensor is managed memory, and the CPU fills
each batch in place through a NumPy view of the input tensor (a data loader writing into a
pinned-free, unified buffer): each step moves the batch to the GPU on demand and back when the
CPU writes the next one. Without managed memory the program copies the batch instead.

    uvmlab capture -o mlp.npz -- python examples/programs/torch_mlp.py
"""

import ctypes
import sys

import numpy as np
import torch

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
B, D, H = 2048, 512, 1024  # batch 2048 x 512 float32 = 4 MiB

torch.manual_seed(0)
rng = np.random.default_rng(0)
w_true = rng.standard_normal((D, 1), dtype=np.float32)
model = torch.nn.Sequential(
    torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, H), torch.nn.ReLU(), torch.nn.Linear(H, 1)
).cuda()
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.empty((B, D), device="cuda")
y = torch.empty((B, 1), device="cuda")


def host(t: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a managed tensor (None when it is plain device memory)."""
    try:
        from cuda.bindings import driver

        err, kind = driver.cuPointerGetAttribute(
            driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_IS_MANAGED, t.data_ptr()
        )
        managed = int(err) == 0 and bool(kind)
    except ImportError:
        managed = False
    if not managed:
        return None
    buf = (ctypes.c_char * (t.numel() * t.element_size())).from_address(t.data_ptr())
    return np.frombuffer(buf, dtype=np.float32).reshape(tuple(t.shape))


xv, yv = host(x), host(y)
for step in range(STEPS):
    xb = rng.standard_normal((B, D), dtype=np.float32)
    yb = xb @ w_true
    torch.cuda.synchronize()  # the GPU is done with the last batch before the CPU overwrites it
    if xv is not None:
        xv[:], yv[:] = xb, yb
    else:
        x.copy_(torch.from_numpy(xb)), y.copy_(torch.from_numpy(yb))
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 10 == 9:
        print(f"step {step + 1}: loss {loss.item():.4f}")
torch.cuda.synchronize()
