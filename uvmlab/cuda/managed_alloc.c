/* A PyTorch CUDAPluggableAllocator that hands out CUDA managed memory (cuMemAllocManaged).
 *
 * Used by `uvmlab capture --managed torch` so that an unmodified PyTorch program runs on
 * unified memory. The CUDA driver library is opened at run time (dlopen), so building this
 * needs only a C compiler, no CUDA headers. Released blocks are kept and handed out again for a
 * request of the same size, as PyTorch's caching allocator does: a tensor made again in the
 * next step reuses the pages of the last one instead of a fresh, unpopulated range.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

typedef int (*mem_alloc_managed_t)(unsigned long long *, size_t, unsigned int);
typedef int (*mem_free_t)(unsigned long long);
typedef int (*ctx_get_t)(void **);
typedef int (*ctx_set_t)(void *);
typedef int (*device_get_t)(int *, int);
typedef int (*primary_retain_t)(void **, int);

#define CU_MEM_ATTACH_GLOBAL 1
#define SLOTS 8192

static mem_alloc_managed_t mem_alloc_managed;
static mem_free_t mem_free;
static ctx_get_t ctx_get;
static ctx_set_t ctx_set;
static device_get_t device_get;
static primary_retain_t primary_retain;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *cached_ptr[SLOTS];
static size_t cached_size[SLOTS];
static int n_cached;

static int load(void) {
    if (mem_alloc_managed) return 1;
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) return 0;
    mem_alloc_managed = (mem_alloc_managed_t)dlsym(h, "cuMemAllocManaged");
    mem_free = (mem_free_t)dlsym(h, "cuMemFree_v2");
    ctx_get = (ctx_get_t)dlsym(h, "cuCtxGetCurrent");
    ctx_set = (ctx_set_t)dlsym(h, "cuCtxSetCurrent");
    device_get = (device_get_t)dlsym(h, "cuDeviceGet");
    primary_retain = (primary_retain_t)dlsym(h, "cuDevicePrimaryCtxRetain");
    return mem_alloc_managed && mem_free && ctx_get && ctx_set && device_get && primary_retain;
}

/* The driver API works on the calling thread's current context; PyTorch's autograd threads may
 * have none yet, so bind the device's primary context (the one the CUDA runtime uses). */
static void bind_primary(int device) {
    void *cur = 0;
    if (ctx_get(&cur) == 0 && cur) return;
    int dev = 0;
    void *ctx = 0;
    if (device_get(&dev, device) == 0 && primary_retain(&ctx, dev) == 0) ctx_set(ctx);
}

void *uvmlab_managed_malloc(ssize_t size, int device, void *stream) {
    (void)stream;
    void *p = 0;
    pthread_mutex_lock(&lock);
    for (int i = n_cached - 1; i >= 0; i--) {
        if (cached_size[i] == (size_t)size) {
            p = cached_ptr[i];
            cached_ptr[i] = cached_ptr[n_cached - 1];
            cached_size[i] = cached_size[n_cached - 1];
            n_cached--;
            break;
        }
    }
    if (!p && load()) {
        unsigned long long d = 0;
        bind_primary(device);
        if (mem_alloc_managed(&d, size > 0 ? (size_t)size : 1, CU_MEM_ATTACH_GLOBAL) == 0)
            p = (void *)d;
    }
    pthread_mutex_unlock(&lock);
    return p;
}

void uvmlab_managed_free(void *ptr, ssize_t size, int device, void *stream) {
    (void)device;
    (void)stream;
    pthread_mutex_lock(&lock);
    if (n_cached < SLOTS) {
        cached_ptr[n_cached] = ptr;
        cached_size[n_cached] = (size_t)size;
        n_cached++;
    } else if (load()) {
        mem_free((unsigned long long)ptr);
    }
    pthread_mutex_unlock(&lock);
}
