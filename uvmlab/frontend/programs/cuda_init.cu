// CUDA initialisation only: the runtime creates its context on the first call (cudaFree(0)).
#include <cstdio>
#include <cuda_runtime.h>
#include "mark.h"

int main()
{
    mark("cudaFree(0): context creation");
    cudaError_t e = cudaFree(0);
    mark("cudaDeviceSynchronize");
    cudaDeviceSynchronize();
    mark("exit");
    std::printf("cuda_init: %s\n", cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : 1;
}
