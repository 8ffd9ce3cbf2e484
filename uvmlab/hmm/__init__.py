"""HMM: the GPU touching pageable (malloc'd) memory through device-private pages
(docs/gaia-hmm.md).

* ``engine`` — ``HmmEngine``: pageable allocations serviced by the modelled
  driver as UVM's uvm_hmm.c services them (migrate_vma to device-private pages on GPU faults,
  back on CPU faults and on eviction), with migration counts;
* ``simulate`` — ``simulate_hmm``, the entry point;
* ``scenarios`` — the built-in example;
* ``support`` — whether a HAL can serve HMM, and what the lab's machines reported
  (``PageableMemoryAccess``).

This package sits above ``driver``, ``engine`` and ``policy``; none of them imports it.
"""
