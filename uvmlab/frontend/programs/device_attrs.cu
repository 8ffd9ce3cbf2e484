// Print the CUDA device attributes other uvmlab issues need, as JSON on stdout.
#include <cstdio>
#include <cuda_runtime.h>

int main()
{
    int dev = 0, v = 0, drv = 0, rt = 0;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) { std::printf("{}\n"); return 1; }
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    std::printf("{\"name\": \"%s\", \"cuda_driver_version\": %d, \"cuda_runtime_version\": %d, "
                "\"compute_capability\": \"%d.%d\", \"total_global_mem\": %zu", p.name, drv, rt,
                p.major, p.minor, p.totalGlobalMem);
    struct { const char *name; cudaDeviceAttr attr; } attrs[] = {
        {"PageableMemoryAccess", cudaDevAttrPageableMemoryAccess},
        {"PageableMemoryAccessUsesHostPageTables", cudaDevAttrPageableMemoryAccessUsesHostPageTables},
        {"ConcurrentManagedAccess", cudaDevAttrConcurrentManagedAccess},
        {"HostNativeAtomicSupported", cudaDevAttrHostNativeAtomicSupported},
        {"DirectManagedMemAccessFromHost", cudaDevAttrDirectManagedMemAccessFromHost},
        {"ManagedMemory", cudaDevAttrManagedMemory},
        {"MultiProcessorCount", cudaDevAttrMultiProcessorCount},
    };
    for (auto &a : attrs) {
        cudaDeviceGetAttribute(&v, a.attr, dev);
        std::printf(", \"%s\": %d", a.name, v);
    }
    std::printf("}\n");
    return 0;
}
