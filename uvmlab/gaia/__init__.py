"""GAIA: one OS page cache spanning CPU and GPU memory (docs/gaia-hmm.md).

GAIA (Brokhman et al., "GAIA: An OS Page Cache for Heterogeneous Systems", ASPLOS'19; the
``acsl-technion/gaia_linux`` kernel) lets GPU memory hold pages of a file that the CPU has
``mmap``ed: the file's pages live in one page cache whose copies may sit in host memory, in GPU
memory, or both, kept consistent lazily by ``maquire`` / ``mrelease``.

* ``costs`` — the host-side constants the GPU profile does not have (storage, page cache);
* ``pagecache`` — the shared cache: per-page copies, versions, dirty bits, the protocol;
* ``engine`` — runs a workload's file operations through the cache;
* ``scenarios`` and ``compare`` — the file workloads and the three-way comparison (GAIA vs
  ``read`` + ``cudaMemcpy`` vs managed memory filled by the CPU).

This package sits above ``driver``, ``timing``, ``engine`` and ``policy``; none of them imports it.
"""
