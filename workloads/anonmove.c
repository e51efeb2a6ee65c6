// anonmove: the three kinds of move rows (docs/schema.md#moves), each a
// known number of times (docs/workloads.md).
//
//   anonmove -u U   U ioctl(UFFDIO_MOVE) calls, each moving one written page
//                   from a private anonymous region into one registered with
//                   userfaultfd (6.8+; exits 3 when the kernel has no
//                   UFFD_FEATURE_MOVE)
//   anonmove -d D   D mremap(MREMAP_DONTUNMAP | MREMAP_MAYMOVE) calls, each
//                   of the first page of a 2-page written region (a partial
//                   move: the old VMA keeps its anon_vma links)
//   anonmove -k P   P pages of identical content madvise(MADV_MERGEABLE)d;
//                   then waits (-w SECONDS, default 60) until the kernel
//                   reports them merged (/proc/self/ksm_merging_pages >= P - 1)
//                   and prints the count; ksmd must be running
//                   (/sys/kernel/mm/ksm/run = 1: the caller's job)
//
// Prints one JSON line of what it did.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// 6.8+ uapi, absent from older libc headers (include/uapi/linux/userfaultfd.h)
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
struct move_arg { uint64_t dst, src, len, mode; int64_t move; };
#define MOVE_CMD _IOWR(UFFDIO, 0x05, struct move_arg)
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static long page;

static char *region(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static int uffd_moves(int n)
{
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        perror("userfaultfd");
        exit(1);
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
    if (ioctl(uffd, UFFDIO_API, &api) < 0) {
        fprintf(stderr, "anonmove: no UFFD_FEATURE_MOVE: %s\n", strerror(errno));
        exit(3);
    }
    int moved = 0;
    for (int i = 0; i < n; i++) {
        char *src = region(page), *dst = region(page);
        memset(src, 0x5a, page);
        struct uffdio_register reg = {.range = {.start = (uintptr_t)dst, .len = page},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
            perror("UFFDIO_REGISTER");
            exit(1);
        }
        struct move_arg mv = {.dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = page};
        if (ioctl(uffd, MOVE_CMD, &mv) == 0 && mv.move == page && dst[0] == 0x5a)
            moved++;
    }
    return moved;
}

static int dontunmap(int n)
{
    int done = 0;
    for (int i = 0; i < n; i++) {
        char *p = region(2 * page);
        memset(p, 1, 2 * page);
        // the system call itself: glibc 2.36's mremap() passes its fifth
        // argument only with MREMAP_FIXED, and the kernel reads it as the
        // new address whenever MREMAP_DONTUNMAP is set
        if (syscall(SYS_mremap, p, page, page, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0) != -1)
            done++;
    }
    return done;
}

static long merging_pages(void)
{
    FILE *f = fopen("/proc/self/ksm_merging_pages", "r");
    long n = -1;
    if (f) {
        if (fscanf(f, "%ld", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static long ksm_pages(int n, int wait_s)
{
    char *p = region((size_t)n * page);
    memset(p, 0x33, (size_t)n * page);
    if (madvise(p, (size_t)n * page, MADV_MERGEABLE) < 0) {
        perror("madvise(MADV_MERGEABLE)");
        exit(1);
    }
    time_t end = time(NULL) + wait_s;
    long m;
    while ((m = merging_pages()) < n - 1 && time(NULL) < end)
        usleep(50000);
    return m;
}

int main(int argc, char **argv)
{
    int u = 0, d = 0, k = 0, w = 60, opt;
    page = sysconf(_SC_PAGESIZE);
    while ((opt = getopt(argc, argv, "u:d:k:w:")) != -1) {
        switch (opt) {
        case 'u': u = atoi(optarg); break;
        case 'd': d = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 'w': w = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: anonmove [-u N] [-d N] [-k PAGES [-w SECONDS]]\n");
            return 2;
        }
    }
    int moved = u ? uffd_moves(u) : 0;
    int kept = d ? dontunmap(d) : 0;
    long merged = k ? ksm_pages(k, w) : 0;
    printf("{\"pid\": %d, \"uffd_moves\": %d, \"dontunmap\": %d, \"ksm_merging_pages\": %ld}\n",
           getpid(), moved, kept, merged);
    return 0;
}
