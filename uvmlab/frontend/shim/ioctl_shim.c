/*
 * uvmlab ioctl shim: an LD_PRELOAD library that records every ioctl a process makes on the
 * NVIDIA device files (/dev/nvidiactl, /dev/nvidiaN, /dev/nvidia-uvm, /dev/nvidia-uvm-tools,
 * /dev/nvidia-modeset, /dev/nvidia-caps/...), and the mmap/munmap calls on them, into a compact
 * binary file that `uvmlab ioctl decode` reads (format: docs/frontend.md, "Trace file").
 *
 * Built by `uvmlab ioctl capture` with:  gcc -O2 -shared -fPIC -o ioctl_shim.so ioctl_shim.c -ldl -lpthread
 * Output file: $UVMLAB_IOCTL_TRACE (appended; each record is written with one write(2) on an
 * O_APPEND descriptor, so child processes of the traced program append whole records too).
 *
 * Parameter bytes: the RM escapes encode their size in the request (_IOC_SIZE, see
 * nv-ioctl-numbers.h: _IOWR('F', NV_IOCTL_BASE + n, ...)); the nvidia-uvm ioctls do not (on Linux
 * UVM_IOCTL_BASE(i) is plain i, uvm_ioctl.h), so for them the shim copies a fixed window of
 * UVMLAB_UVM_WINDOW bytes and the decoder cuts it to the known parameter struct size.
 * All copies of user memory go through process_vm_readv on our own pid, which returns a short
 * count instead of faulting when the window runs past mapped memory.
 * Both the bytes before the call (inputs) and after it (outputs, status fields) are recorded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define UVMLAB_MAGIC "UVMLIOC1"
#define UVMLAB_UVM_WINDOW 512u
#define UVMLAB_MAX_PARAM 65536u

/* record kinds */
#define REC_IOCTL 1u
#define REC_MMAP 2u
#define REC_MUNMAP 3u
#define REC_MARK 4u

typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static ioctl_fn real_ioctl;
static mmap_fn real_mmap;
static munmap_fn real_munmap;
static int out_fd = -1;
/* Path prefix of the files to record; UVMLAB_IOCTL_PREFIX overrides it (the test suite points it
 * at a temporary directory, since the CI machine has no NVIDIA device files). */
static const char *prefix = "/dev/nvidia";
static size_t prefix_len = 11;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_shim;

/* Regions mmapped from an NVIDIA device file, so that their munmap can be recorded. */
#define MAX_REGIONS 4096
static struct { uintptr_t addr; size_t len; } regions[MAX_REGIONS];
static int n_regions;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void resolve(void)
{
    if (!real_ioctl)
        real_ioctl = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    if (!real_mmap)
        real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
    if (!real_munmap)
        real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
}

__attribute__((constructor)) static void shim_init(void)
{
    const char *path = getenv("UVMLAB_IOCTL_TRACE");
    const char *pfx = getenv("UVMLAB_IOCTL_PREFIX");
    resolve();
    if (pfx && *pfx) {
        prefix = pfx;
        prefix_len = strlen(pfx);
    }
    if (!path || !*path)
        return;
    out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd >= 0 && lseek(out_fd, 0, SEEK_END) == 0) {
        /* file header: magic, format version, struct sizes the decoder checks */
        unsigned char hdr[16];
        memcpy(hdr, UVMLAB_MAGIC, 8);
        uint32_t version = 1, uvm_window = UVMLAB_UVM_WINDOW;
        memcpy(hdr + 8, &version, 4);
        memcpy(hdr + 12, &uvm_window, 4);
        if (write(out_fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr) {
            close(out_fd);
            out_fd = -1;
        }
    }
}

/* fd -> path; 0 if the fd is not an NVIDIA device file. */
static size_t nvidia_path(int fd, char *buf, size_t cap)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (strncmp(buf, prefix, prefix_len) != 0)
        return 0;
    return (size_t)n;
}

/* Read our own memory without faulting: process_vm_readv, or, where a seccomp filter refuses it,
 * a write(2) into a pipe (the kernel answers EFAULT instead of a SIGSEGV). */
static int vm_readv_ok = 1;
static __thread int probe_pipe[2] = {-1, -1};

static ssize_t read_own(void *dst, const void *addr, size_t len)
{
    if (vm_readv_ok) {
        struct iovec local = {dst, len}, remote = {(void *)addr, len};
        ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (n >= 0 || (errno != EPERM && errno != ENOSYS))
            return n;
        vm_readv_ok = 0;
    }
    if (probe_pipe[0] < 0 && pipe2(probe_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > 4096 ? 4096 : len - done;
        ssize_t w = write(probe_pipe[1], (const char *)addr + done, chunk);
        if (w <= 0)
            break;
        ssize_t r = read(probe_pipe[0], (char *)dst + done, (size_t)w);
        if (r != w)
            break;
        done += (size_t)w;
    }
    return done ? (ssize_t)done : -1;
}

/* Copy up to len bytes at addr; returns bytes copied (short where the window leaves mapped memory). */
static size_t safe_copy(void *dst, const void *addr, size_t len)
{
    if (!addr || !len)
        return 0;
    ssize_t n = read_own(dst, addr, len);
    if (n > 0)
        return (size_t)n;
    /* window crosses the end of a mapping: retry up to the page boundary */
    size_t to_page = 4096 - ((uintptr_t)addr & 4095);
    if (to_page < len) {
        n = read_own(dst, addr, to_page);
        if (n > 0)
            return (size_t)n;
    }
    return 0;
}

/* sizeof(cmd##_PARAMS) for the nvidia-uvm ioctls (uvm_ioctl.h, uvm_linux_ioctl.h, x86-64, 580 branch),
 * the size uvm_ioctl() in uvm.c copies in and out. */
static uint32_t uvm_param_size(unsigned long cmd)
{
    switch (cmd) {
    case 0x30000001: return 16;  /* UVM_INITIALIZE */
    case 0x30000002: return 0;   /* UVM_DEINITIALIZE */
    case 23: return 16;          /* UVM_CREATE_RANGE_GROUP */
    case 24: return 16;          /* UVM_DESTROY_RANGE_GROUP */
    case 25: return 32;          /* UVM_REGISTER_GPU_VASPACE */
    case 26: return 20;          /* UVM_UNREGISTER_GPU_VASPACE */
    case 27: return 56;          /* UVM_REGISTER_CHANNEL */
    case 28: return 28;          /* UVM_UNREGISTER_CHANNEL */
    case 29: return 36;          /* UVM_ENABLE_PEER_ACCESS */
    case 30: return 36;          /* UVM_DISABLE_PEER_ACCESS */
    case 31: return 32;          /* UVM_SET_RANGE_GROUP */
    case 33: return 9264;        /* UVM_MAP_EXTERNAL_ALLOCATION */
    case 34: return 24;          /* UVM_FREE */
    case 37: return 40;          /* UVM_REGISTER_GPU */
    case 38: return 20;          /* UVM_UNREGISTER_GPU */
    case 39: return 8;           /* UVM_PAGEABLE_MEM_ACCESS */
    case 40: case 41: return 272; /* UVM_PREVENT / ALLOW_MIGRATION_RANGE_GROUPS */
    case 42: return 40;          /* UVM_SET_PREFERRED_LOCATION */
    case 43: case 44: case 45: return 24; /* UNSET_PREFERRED_LOCATION, EN/DISABLE_READ_DUPLICATION */
    case 46: case 47: return 40; /* UVM_SET / UNSET_ACCESSED_BY */
    case 51: return 80;          /* UVM_MIGRATE */
    case 53: return 32;          /* UVM_MIGRATE_RANGE_GROUP */
    case 54: case 55: return 20; /* UVM_EN/DISABLE_SYSTEM_WIDE_ATOMICS */
    case 56: return 56;          /* UVM_TOOLS_INIT_EVENT_TRACKER */
    case 64: return 16;          /* UVM_TOOLS_GET_PROCESSOR_UUID_TABLE */
    case 65: return 40;          /* UVM_MAP_DYNAMIC_PARALLELISM_REGION */
    case 66: return 40;          /* UVM_UNMAP_EXTERNAL */
    case 68: return 9248;        /* UVM_ALLOC_SEMAPHORE_POOL */
    case 69: return 4;           /* UVM_CLEAN_UP_ZOMBIE_RESOURCES */
    case 70: case 71: case 72: case 73: return 24; /* PAGEABLE_MEM_ACCESS_ON_GPU .. CREATE_EXTERNAL_RANGE */
    case 74: return 40;          /* UVM_MAP_EXTERNAL_SPARSE */
    case 75: return 8;           /* UVM_MM_INITIALIZE */
    case 78: return 56;          /* UVM_ALLOC_DEVICE_P2P */
    case 80: return 32;          /* UVM_DISCARD */
    default: return UVMLAB_UVM_WINDOW;
    }
}

/*
 * Record layout (little endian): a 64-byte fixed part
 *   u32 total_len, u32 kind, u32 pid, u32 tid, u64 t_start_ns, u64 t_end_ns,
 *   s32 fd, s32 ret, s32 err, u32 path_len, u64 request_or_addr, u64 arg_or_len,
 * then u32 in_len, u32 out_len, then the path, the bytes before the call, the bytes after it.
 */
static void emit(uint32_t kind, int fd, const char *path, size_t path_len, uint64_t req, uint64_t arg,
                 uint64_t t0, uint64_t t1, int ret, int err, const void *in, uint32_t in_len,
                 const void *out, uint32_t out_len)
{
    unsigned char head[64];
    uint32_t total = 64 + (uint32_t)path_len + in_len + out_len;
    uint32_t pid = (uint32_t)getpid(), tid = (uint32_t)syscall(SYS_gettid);
    uint32_t plen = (uint32_t)path_len;
    int32_t sfd = fd, sret = ret, serr = err;
    memcpy(head + 0, &total, 4);
    memcpy(head + 4, &kind, 4);
    memcpy(head + 8, &pid, 4);
    memcpy(head + 12, &tid, 4);
    memcpy(head + 16, &t0, 8);
    memcpy(head + 24, &t1, 8);
    memcpy(head + 32, &sfd, 4);
    memcpy(head + 36, &sret, 4);
    memcpy(head + 40, &serr, 4);
    memcpy(head + 44, &plen, 4);
    memcpy(head + 48, &req, 8);
    memcpy(head + 56, &arg, 8);
    unsigned char *buf = malloc(total + 8);
    if (!buf)
        return;
    memcpy(buf, head, 64);
    uint32_t lens[2] = {in_len, out_len};
    /* the two lengths follow the fixed header so a reader can split the payload */
    size_t off = 64;
    memcpy(buf + off, lens, 8);
    off += 8;
    memcpy(buf + off, path, path_len);
    off += path_len;
    if (in_len)
        memcpy(buf + off, in, in_len);
    off += in_len;
    if (out_len)
        memcpy(buf + off, out, out_len);
    off += out_len;
    total = (uint32_t)off;
    memcpy(buf, &total, 4);
    pthread_mutex_lock(&out_lock);
    ssize_t w = write(out_fd, buf, off);
    (void)w;
    pthread_mutex_unlock(&out_lock);
    free(buf);
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    resolve();
    char path[256];
    size_t plen = 0;
    if (out_fd >= 0 && !in_shim)
        plen = nvidia_path(fd, path, sizeof path);
    if (!plen)
        return real_ioctl(fd, request, arg);

    in_shim = 1;
    uint32_t size;
    if (((request >> 8) & 0xff) == 'F')
        size = (uint32_t)((request >> 16) & 0x3fff); /* _IOC_SIZE */
    else
        size = uvm_param_size(request);
    if (size > UVMLAB_MAX_PARAM)
        size = UVMLAB_MAX_PARAM;
    unsigned char *before = size ? malloc(size) : NULL;
    unsigned char *after = size ? malloc(size) : NULL;
    uint32_t in_len = before ? (uint32_t)safe_copy(before, arg, size) : 0;
    uint64_t t0 = now_ns();
    int ret = real_ioctl(fd, request, arg);
    int err = ret < 0 ? errno : 0;
    uint64_t t1 = now_ns();
    uint32_t out_len = after ? (uint32_t)safe_copy(after, arg, in_len) : 0;
    emit(REC_IOCTL, fd, path, plen, (uint64_t)request, (uint64_t)(uintptr_t)arg, t0, t1, ret, err, before,
         in_len, after, out_len);
    free(before);
    free(after);
    in_shim = 0;
    errno = err;
    return ret;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    resolve();
    char path[256];
    size_t plen = 0;
    if (out_fd >= 0 && !in_shim && fd >= 0)
        plen = nvidia_path(fd, path, sizeof path);
    if (!plen)
        return real_mmap(addr, len, prot, flags, fd, off);
    in_shim = 1;
    uint64_t t0 = now_ns();
    void *res = real_mmap(addr, len, prot, flags, fd, off);
    int err = res == MAP_FAILED ? errno : 0;
    uint64_t t1 = now_ns();
    /* payload: requested addr, length, prot, flags, offset */
    uint64_t info[5] = {(uint64_t)(uintptr_t)addr, (uint64_t)len, (uint64_t)prot, (uint64_t)flags,
                        (uint64_t)off};
    emit(REC_MMAP, fd, path, plen, (uint64_t)(uintptr_t)res, (uint64_t)len, t0, t1,
         res == MAP_FAILED ? -1 : 0, err, info, sizeof info, NULL, 0);
    if (res != MAP_FAILED) {
        pthread_mutex_lock(&out_lock);
        if (n_regions < MAX_REGIONS) {
            regions[n_regions].addr = (uintptr_t)res;
            regions[n_regions].len = len;
            n_regions++;
        }
        pthread_mutex_unlock(&out_lock);
    }
    in_shim = 0;
    errno = err;
    return res;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

int munmap(void *addr, size_t len)
{
    resolve();
    int tracked = 0;
    if (out_fd >= 0 && !in_shim) {
        pthread_mutex_lock(&out_lock);
        for (int i = 0; i < n_regions; i++) {
            if (regions[i].addr == (uintptr_t)addr) {
                tracked = 1;
                regions[i] = regions[--n_regions];
                break;
            }
        }
        pthread_mutex_unlock(&out_lock);
    }
    if (!tracked)
        return real_munmap(addr, len);
    in_shim = 1;
    uint64_t t0 = now_ns();
    int ret = real_munmap(addr, len);
    int err = ret < 0 ? errno : 0;
    uint64_t t1 = now_ns();
    emit(REC_MUNMAP, -1, "", 0, (uint64_t)(uintptr_t)addr, (uint64_t)len, t0, t1, ret, err, NULL, 0, NULL,
         0);
    in_shim = 0;
    errno = err;
    return ret;
}

/* A label in the trace (kind 4, the label stored as the path): traced programs call it through
 * dlsym(RTLD_DEFAULT, "uvmlab_mark") or ctypes so that the decoder can show which source line
 * issued which ioctls; a program run without the shim simply finds no such symbol. */
void uvmlab_mark(const char *label)
{
    if (out_fd < 0 || !label)
        return;
    size_t n = strnlen(label, 200);
    uint64_t t = now_ns();
    emit(REC_MARK, -1, label, n, 0, 0, t, t, 0, 0, NULL, 0, NULL, 0);
}
