/* uvmlab_mark(label): a label in the ioctl trace when the uvmlab shim is preloaded, else nothing. */
#pragma once
#include <dlfcn.h>
static inline void mark(const char *label)
{
    void (*fn)(const char *) = (void (*)(const char *))dlsym(RTLD_DEFAULT, "uvmlab_mark");
    if (fn)
        fn(label);
}
