/*
 * vg - tell valgrind's memcheck what the kernel does to memory through
 * io_uring, behind valgrind's back (docs/RELIABILITY.md, "valgrind").
 *
 * memcheck knows that recv(2) fills its buffer and checks that write(2)
 * and send(2) read only initialised bytes. A receive or a send through the
 * ring is neither: without these marks every received byte would stay
 * "uninitialised" for ever, and an uninitialised byte sent to a peer or
 * written to the spool would go unreported.
 *
 *   vg_kernel_wrote(p, n)     the kernel filled p[0..n) (a completion)
 *   vg_kernel_reclaims(p, n)  p[0..n) goes back to the kernel: its old
 *                             bytes must not be read again
 *   vg_kernel_reads(p, n)     the kernel will read p[0..n): report any
 *                             uninitialised byte now, as memcheck does
 *                             for write(2)
 *
 * Outside valgrind each is a few instructions that do nothing; built
 * without <valgrind/memcheck.h>, or with -DNVALGRIND, they are nothing.
 */
#ifndef RINGMAIL_VG_H
#define RINGMAIL_VG_H

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define RINGMAIL_HAVE_MEMCHECK 1
#endif
#endif

#ifdef RINGMAIL_HAVE_MEMCHECK
#define vg_kernel_wrote(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define vg_kernel_reclaims(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define vg_kernel_reads(p, n) ((void)VALGRIND_CHECK_MEM_IS_DEFINED((p), (n)))
#else
#define vg_kernel_wrote(p, n) ((void)(p), (void)(n))
#define vg_kernel_reclaims(p, n) ((void)(p), (void)(n))
#define vg_kernel_reads(p, n) ((void)(p), (void)(n))
#endif

#endif
