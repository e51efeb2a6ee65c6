// SPDX-License-Identifier: GPL-2.0
//
// anonshape: an address space of known shape, for checking anoncollect's
// counts against the kernel's rules (docs/workloads.md derives them).
//
//   anonshape -n N -s S -m M -f F [-t] [-w] [-P] [-c C] [-o] [-k K] [-H] [-r]
//
// 1. N private anonymous regions of REGION_PAGES pages each, separated by
//    PROT_NONE guard pages so that no two can share an anon_vma
//    (find_mergeable_anon_vma needs adjacent compatible VMAs); one byte is
//    written in each: N faults, N anon_vmas, N AVCs (__anon_vma_prepare).
// 2. S of them get their first page mprotect()ed read-only: S splits, each
//    one vm_area_dup and one AVC (anon_vma_clone from __split_vma).
// 3. M others are moved by mremap() to a second guarded area: M moves, each
//    one VMA and one AVC (copy_vma -> anon_vma_clone), then the old AVC freed.
// 4. F children are forked one after another; each exits at once (or, with
//    -t, first writes one byte in every region: CoW faults, no new anon_vma).
//    Per fork and per parent VMA with an anon_vma: one AVC cloned, one
//    anon_vma and one AVC of the child's own (anon_vma_fork).
// -w waits for a newline on stdin before step 1 (for manual tracing).
// -P runs the F children at the same time instead of one after the other.
// -o after step 3, writes an extra 8 MiB private anonymous mapping and pages
//    it out (madvise MADV_PAGEOUT; needs swap): reclaim walks the anon rmap
//    of each folio (try_to_unmap -> rmap_walk). One more fault (anon_vma).
// -c C makes each child split and re-merge its copy of region 0 C times
//    (mprotect of its first page to read-only and back): every split and
//    merge takes the write lock of the parent's root anon_vma, which all
//    children share, so with -P they contend for it.
// -k K makes each child, after the above, fault K regions of its own (a
//    guarded reservation of its own, as step 1): K anon_vmas and K AVCs per
//    child.
// -r after the F children, a fork chain that makes anon_vma_fork() reuse an
//    anon_vma: child C forks grandchild G and exits (C's own anon_vmas keep
//    no active VMA and one child each: G's), then G forks H, whose copy of
//    each of G's VMAs with an anon_vma reuses C's (6.12 anon_vma_clone(),
//    7.3 maybe_reuse_anon_vma()); H and G exit. 7.x allocates H's own
//    anon_vma and AVC first and frees both at once (a transient pair).
// -H holds everything alive for a snapshot: each child, once set up, tells
//    the parent (a pipe) and waits; when all are, the parent prints "ready"
//    on stdout and waits for a line on stdin, then kills and reaps them.

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define REGION_PAGES 4
#define PAGEOUT_MIB 8

static long page;

static void die(const char *what)
{
    fprintf(stderr, "anonshape: %s: %s\n", what, strerror(errno));
    exit(1);
}

// A PROT_NONE reservation of `slots` slots, each a guard page followed by
// a region; returns the address of slot 0's region.
static char *reserve(long slots)
{
    size_t len = (size_t)(slots * (REGION_PAGES + 1) + 1) * page;
    char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        die("mmap reservation");
    return p + page;
}

static char *slot(char *base, long i)
{
    return base + i * (REGION_PAGES + 1) * page;
}

// `k` regions of REGION_PAGES pages in a guarded reservation, one byte
// written in each (step 1's shape).
static char *fault_regions(long k)
{
    char *regions = reserve(k);
    size_t len = (size_t)REGION_PAGES * page;
    for (long i = 0; i < k; i++) {
        char *r = mmap(slot(regions, i), len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (r == MAP_FAILED)
            die("mmap region");
        r[0] = 1;
    }
    return regions;
}

// -r: parent -> C -> G (C exits, the parent reaps it) -> H; G tells the
// parent when H is reaped. Returns when G has.
static void reuse_chain(void)
{
    int gone[2], done[2];
    if (pipe(gone) || pipe(done))
        die("pipe");
    pid_t c = fork();
    if (c < 0)
        die("fork C");
    if (c == 0) {
        pid_t g = fork();
        if (g < 0)
            die("fork G");
        if (g == 0) {
            char x;
            if (read(gone[0], &x, 1) != 1)   // C exited and was reaped
                die("read gone");
            pid_t h = fork();
            if (h < 0)
                die("fork H");
            if (h == 0)
                _exit(0);
            if (waitpid(h, NULL, 0) < 0)
                die("waitpid H");
            if (write(done[1], "d", 1) != 1)
                die("write done");
            _exit(0);
        }
        _exit(0);
    }
    char x;
    if (waitpid(c, NULL, 0) < 0)
        die("waitpid C");
    if (write(gone[1], "g", 1) != 1)
        die("write gone");
    if (read(done[0], &x, 1) != 1)
        die("read done");
}

int main(int argc, char **argv)
{
    long n = 0, s = 0, m = 0, f = 0;
    long churn = 0, own = 0;
    int touch = 0, wait_stdin = 0, parallel = 0, pageout = 0, hold = 0, reuse = 0, opt;

    while ((opt = getopt(argc, argv, "n:s:m:f:twPc:ok:Hr")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 's': s = atol(optarg); break;
        case 'm': m = atol(optarg); break;
        case 'f': f = atol(optarg); break;
        case 't': touch = 1; break;
        case 'w': wait_stdin = 1; break;
        case 'P': parallel = 1; break;
        case 'o': pageout = 1; break;
        case 'c': churn = atol(optarg); break;
        case 'k': own = atol(optarg); break;
        case 'H': hold = 1; break;
        case 'r': reuse = 1; break;
        default:
            fprintf(stderr, "usage: anonshape -n REGIONS -s SPLITS -m MREMAPS -f FORKS [-t] [-w] [-P] [-c CHURN] [-o] "
                    "[-k OWN] [-H] [-r]\n");
            return 2;
        }
    }
    if (n < 0 || s < 0 || m < 0 || f < 0 || churn < 0 || own < 0 || s + m > n || (churn && n - m < 1)) {
        fprintf(stderr, "anonshape: need 0 <= S + M <= N, and a region not moved for -c\n");
        return 2;
    }
    page = sysconf(_SC_PAGESIZE);
    if (wait_stdin)
        getchar();

    char *regions = fault_regions(n), *moved = reserve(m);
    size_t len = (size_t)REGION_PAGES * page;
    for (long i = 0; i < s; i++)
        if (mprotect(slot(regions, i), page, PROT_READ))
            die("mprotect");
    for (long i = 0; i < m; i++)
        if (mremap(slot(regions, n - 1 - i), len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
                   slot(moved, i)) == MAP_FAILED)
            die("mremap");

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
    if (pageout) {
        // One more mapping of PAGEOUT_MIB, every page written, then paged
        // out: reclaim (shrink_folio_list -> try_to_unmap -> rmap_walk)
        // walks the anon rmap of each folio it can take off the LRU.
        size_t plen = (size_t)PAGEOUT_MIB << 20;
        char *p = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap pageout");
        memset(p, 3, plen);
        if (madvise(p, plen, MADV_PAGEOUT))
            die("madvise MADV_PAGEOUT");
    }

    int ready[2];
    pid_t *kids = calloc(f ? f : 1, sizeof(*kids));
    if (!kids || (hold && pipe(ready)))
        die("hold");
    for (long k = 0; k < f; k++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        kids[k] = pid;
        if (pid == 0) {
            if (touch) {
                for (long i = 0; i < n - m; i++)
                    slot(regions, i)[REGION_PAGES * page - 1] = 2;
                for (long i = 0; i < m; i++)
                    slot(moved, i)[REGION_PAGES * page - 1] = 2;
            }
            for (long c = 0; c < churn; c++) {
                char *r0 = slot(regions, 0);
                if (mprotect(r0, page, PROT_READ) || mprotect(r0, page, PROT_READ | PROT_WRITE))
                    die("mprotect churn");
            }
            if (own)
                fault_regions(own);
            if (hold) {
                if (write(ready[1], "r", 1) != 1)
                    die("ready");
                for (;;)
                    pause();
            }
            _exit(0);
        }
        if (!parallel && !hold && waitpid(pid, NULL, 0) < 0)
            die("waitpid");
    }
    if (hold) {
        char c;
        int ch;
        for (long k = 0; k < f; k++)
            if (read(ready[0], &c, 1) != 1)
                die("ready");
        printf("ready\n");
        fflush(stdout);
        while ((ch = getchar()) != '\n' && ch != EOF)
            ;
        for (long k = 0; k < f; k++)
            kill(kids[k], SIGKILL);
    }
    if (parallel || hold)
        while (wait(NULL) > 0)
            ;
    if (reuse)
        reuse_chain();
    return 0;
}
