"""A PyTorch program for the ioctl capture: allocate, matmul, copy back."""

import ctypes

import torch

try:
    _mark = ctypes.CDLL(None).uvmlab_mark
    _mark.argtypes = [ctypes.c_char_p]
except AttributeError:

    def _mark(label: bytes) -> None:
        return None


def mark(label: str) -> None:
    _mark(label.encode())


mark("torch: init + alloc")
a = torch.randn(1024, 1024, device="cuda")
b = torch.randn(1024, 1024, device="cuda")
mark("torch: matmul")
c = a @ b
torch.cuda.synchronize()
mark("torch: copy to host")
s = float(c.sum().cpu())
mark("exit")
print("torch_program:", s)
