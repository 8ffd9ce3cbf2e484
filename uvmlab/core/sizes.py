"""Page and block sizes, in one place: every layer reads them from here.

The driver's VA block is 2 MiB (``UVM_VA_BLOCK_SIZE``, uvm_va_block_types.h) of 4 KiB pages; a GPU
root chunk of the PMM is also 2 MiB (``UVM_CHUNK_SIZE_MAX``, uvm_pmm_gpu.h).
"""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # 4 KiB
BLOCK_SHIFT = 9  # pages per VA block, as a shift: 2 MiB / 4 KiB = 512
PAGES_PER_BLOCK = 1 << BLOCK_SHIFT
VA_BLOCK_SIZE = PAGES_PER_BLOCK * PAGE_SIZE  # 2 MiB
