// One managed-memory program with advice and prefetch. Its IR twin is
// uvmlab.frontend.programs.managed_advise_ir(): the same allocations, advice and prefetches,
// so that replaying this program's UVM ioctls can be checked against the IR version.
#include <cstdio>
#include <cuda_runtime.h>
#include "mark.h"

#define MiB (1ull << 20)
#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    std::printf("%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

__global__ void touch(char *a, const char *b, size_t na, size_t nb, int *sum)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    int s = 0;
    for (size_t p = i * 4096; p < na; p += stride * 4096) a[p] = 1;
    for (size_t p = i * 4096; p < nb; p += stride * 4096) s += b[p];
    if (s) atomicAdd(sum, s);
}

#if CUDART_VERSION >= 13000
static cudaMemLocation gpu0() { cudaMemLocation l = {}; l.type = cudaMemLocationTypeDevice; l.id = 0; return l; }
static cudaMemLocation host() { cudaMemLocation l = {}; l.type = cudaMemLocationTypeHost; l.id = 0; return l; }
#define ADVISE(p, n, adv, loc) cudaMemAdvise(p, n, adv, loc)
#define PREFETCH(p, n, loc) cudaMemPrefetchAsync(p, n, loc, 0, 0)
#else
static int gpu0() { return 0; }
static int host() { return cudaCpuDeviceId; }
#define ADVISE(p, n, adv, loc) cudaMemAdvise(p, n, adv, loc)
#define PREFETCH(p, n, loc) cudaMemPrefetchAsync(p, n, loc, 0)
#endif

int main()
{
    const size_t na = 32 * MiB, nb = 16 * MiB;
    char *a, *b;
    int *sum;
    mark("cudaFree(0)");
    CHECK(cudaFree(0));
    mark("cudaMallocManaged a 32MiB");
    CHECK(cudaMallocManaged(&a, na));
    mark("cudaMallocManaged b 16MiB");
    CHECK(cudaMallocManaged(&b, nb));
    mark("cudaMallocManaged sum");
    CHECK(cudaMallocManaged(&sum, sizeof(int)));
    mark("advise a[0:16MiB] SetPreferredLocation gpu0");
    CHECK(ADVISE(a, 16 * MiB, cudaMemAdviseSetPreferredLocation, gpu0()));
    mark("advise a SetAccessedBy cpu");
    CHECK(ADVISE(a, na, cudaMemAdviseSetAccessedBy, host()));
    mark("advise b SetReadMostly");
    CHECK(ADVISE(b, nb, cudaMemAdviseSetReadMostly, gpu0()));
    mark("prefetch a -> gpu0");
    CHECK(PREFETCH(a, na, gpu0()));
    mark("kernel touch");
    touch<<<64, 256>>>(a, b, na, nb, sum);
    CHECK(cudaGetLastError());
    mark("cudaDeviceSynchronize");
    CHECK(cudaDeviceSynchronize());
    mark("prefetch a[16MiB:32MiB] -> cpu");
    CHECK(PREFETCH(a + 16 * MiB, 16 * MiB, host()));
    CHECK(cudaDeviceSynchronize());
    mark("cpu touch a");
    long s = 0;
    for (size_t p = 0; p < na; p += 4096) s += a[p];
    mark("advise a[0:16MiB] UnsetPreferredLocation");
    CHECK(ADVISE(a, 16 * MiB, cudaMemAdviseUnsetPreferredLocation, gpu0()));
    mark("cudaFree a, b, sum");
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
    CHECK(cudaFree(sum));
    mark("exit");
    std::printf("managed_advise: ok (%ld)\n", s);
    return 0;
}
