"""Tenants sharing one GPU: the mdev / vGPU control plane, tenants' memory over one PMM, time
sharing under NVIDIA vGPU's schedulers, scenario files and their results (docs/vgpu.md).

A layer above the driver and the engine: it imports them, they never import it.
"""
