/*
 * A small benchmark harness shared by the programs in tests/bench/.
 *
 * Each measured case is a function that runs its operation `iters` times.
 * BENCH_RUN() times it (median of several repetitions, wall clock) and, when
 * the program runs under `valgrind --tool=callgrind`, also dumps the exact
 * instruction count of one repetition under the case's name. The script
 * tests/bench/callgrind.py runs a program that way and prints Ir per
 * operation next to the wall-clock figures; instruction counts are the
 * stable figure on shared, noisy machines, wall time is the second one.
 *
 * Results go to stdout as one line per case:
 *   case <name> ns/op <median> min <min> max <max> iters <n>
 * and the program may print ratio lines of its own.
 */
#ifndef CIOT_BENCH_H
#define CIOT_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <valgrind/callgrind.h>

/* Keeps the compiler from dropping a computed value. */
#define BENCH_KEEP(x) __asm__ volatile("" : : "g"(x) : "memory")
/* Keeps the compiler from treating memory as known (inputs read anew). */
#define BENCH_CLOBBER() __asm__ volatile("" : : : "memory")

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Iterations: BENCH_SCALE in the environment multiplies or divides the
 * default (e.g. 0.01 in CI, where the point is that benchmarks still run). */
static inline long bench_iters(long dflt)
{
    const char *s = getenv("BENCH_SCALE");
    double f = s ? atof(s) : 1.0;
    if (!(f > 0))
        f = 1.0;
    long n = (long)((double)dflt * f);
    return n < 1 ? 1 : n;
}

typedef void (*bench_fn)(void *ctx, long iters);

/*
 * Runs fn: under callgrind, once with the counters zeroed before and dumped
 * after (the dump is named "<name>:<iters>"); otherwise `reps` times, and
 * prints the median ns per operation. Returns that median (0 under valgrind).
 */
static inline double bench_run(const char *name, bench_fn fn, void *ctx, long iters, int reps)
{
    if (RUNNING_ON_VALGRIND) {
        char label[256];
        snprintf(label, sizeof label, "%s:%ld", name, iters);
        fn(ctx, iters < 10 ? iters : 1); /* warm caches and lazy binding */
        CALLGRIND_ZERO_STATS;
        fn(ctx, iters);
        CALLGRIND_DUMP_STATS_AT(label);
        printf("case %s iters %ld (instructions in callgrind dump)\n", name, iters);
        return 0;
    }
    double t[64];
    if (reps > 64)
        reps = 64;
    if (reps < 1)
        reps = 1;
    fn(ctx, iters / 10 + 1);
    for (int r = 0; r < reps; r++) {
        uint64_t a = bench_now_ns();
        fn(ctx, iters);
        t[r] = (double)(bench_now_ns() - a) / (double)iters;
    }
    qsort(t, (size_t)reps, sizeof t[0], bench_cmp_double);
    double med = t[reps / 2];
    printf("case %s ns/op %.1f min %.1f max %.1f iters %ld\n", name, med, t[0], t[reps - 1], iters);
    fflush(stdout);
    return med;
}

/* A message for bench_case_jansson_loadb(). */
typedef struct bench_text {
    const char *p;
    size_t n;
} bench_text;

static inline size_t bench_jansson_once(const char *p, size_t n)
{
    json_t *root = json_loadb(p, n, 0, NULL);
    if (!root) {
        fprintf(stderr, "bench: wrong result: jansson\n");
        exit(1);
    }
    size_t k = json_object_size(root);
    json_decref(root);
    return k;
}

/* The reference figure of several programs: jansson's json_loadb of the
 * same message (ctx: a bench_text), parsed and freed, nothing read. */
static inline void bench_case_jansson_loadb(void *ctx, long iters)
{
    const bench_text *t = ctx;
    for (long i = 0; i < iters; i++) {
        BENCH_CLOBBER();
        BENCH_KEEP(bench_jansson_once(t->p, t->n));
    }
}

#endif /* CIOT_BENCH_H */
