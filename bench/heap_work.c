/* heap_work.c — the malloc/free workload of `make bench`'s heap section.
 *
 * Two threads each run PAIRS iterations of: free one block of a window of
 * 1024 live blocks, chosen at random, and malloc a new one of a mixed small
 * size in its place (16 .. 1024 bytes, three quarters of them under 256, as
 * small objects dominate real programs), writing its first 16 bytes as a
 * constructor would. So each iteration is one malloc+free pair, and about
 * 2 x 1024 blocks (~0.6 MiB) are live at any time. The threads never share
 * blocks. Everything is seeded; the printed checksum (sizes and contents
 * of the blocks) is the same in every run, profiled or not.
 *
 * It also prints what the harness needs apart from the process's totals:
 * worker_cpu_ns, the CPU time of the two workers' loops alone (their
 * thread CPU clocks; no start-up, no exit, no profile dump), and
 * hwm_kb, the peak resident set before main returns (VmHWM), so before
 * any profile is written at exit.
 *
 *   usage: heap_work [PAIRS_PER_THREAD [WINDOW [MAX_SIZE]]]
 *          (default 20000000 1024 1024)
 *
 * WINDOW (a power of two, up to 65536) and MAX_SIZE (a power of two, 256
 * and up) give the other shape issue 9 measured: 4096 live blocks per
 * thread, sizes 16 .. 4096 (the same 3-in-4-small mix, scaled).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 2
#define WINDOW_MAX 65536

static unsigned window_size = 1024; /* live blocks per thread */
static size_t size_mask = 1023;     /* MAX_SIZE - 1 */

/* One cache line each, and the random state kept in a register: the two
 * workers' states were 32 bytes apart in main's frame, and rng was stored
 * every iteration (malloc and free are opaque calls), so whenever main's
 * stack put them in one line (half the runs, by where ASLR put the
 * stack) every iteration moved that line between the cores: 1.5x the
 * time of the other runs, profiled or not, and the median of a round's
 * ratios fell to one mode or the other. */
typedef struct __attribute__((aligned(64))) worker {
	uint64_t rng;
	uint64_t pairs;
	uint64_t checksum;
	int64_t cpu_ns;
} worker_t;

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* VmHWM from /proc/self/status, in KiB; -1 if unreadable. */
static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static inline uint64_t next_random(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static inline size_t mixed_size(uint64_t r)
{
	/* 3 in 4 under 256 bytes, the rest up to 1024. */
	return (r & 3) ? 16 + ((r >> 2) & 239) : 16 + ((r >> 2) & (size_mask - 16));
}

__attribute__((noinline)) static void *make_object(size_t size, uint64_t tag)
{
	uint64_t *p = malloc(size);
	if (!p)
		abort();
	p[0] = tag;
	p[1] = size;
	return p;
}

__attribute__((noinline)) static uint64_t drop_object(void *p)
{
	uint64_t *q = p;
	uint64_t sum = q[0] ^ q[1];
	free(p);
	return sum;
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	void *window[window_size]; /* on the thread's stack, as before */
	uint64_t sum = 0, rng = w->rng;
	int64_t t0 = thread_cpu_ns();
	for (unsigned i = 0; i < window_size; i++)
		window[i] = make_object(mixed_size(next_random(&rng)), (uint64_t)i);
	for (uint64_t n = 0; n < w->pairs; n++) {
		uint64_t r = next_random(&rng);
		unsigned i = (unsigned)(r >> 40) & (window_size - 1);
		sum += drop_object(window[i]);
		window[i] = make_object(mixed_size(r), n);
	}
	for (unsigned i = 0; i < window_size; i++)
		sum += drop_object(window[i]);
	w->checksum = sum;
	w->cpu_ns = thread_cpu_ns() - t0;
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t pairs = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000;
	if (argc > 2)
		window_size = (unsigned)strtoul(argv[2], NULL, 10);
	if (argc > 3)
		size_mask = strtoul(argv[3], NULL, 10) - 1;
	if (window_size == 0 || window_size > WINDOW_MAX || (window_size & (window_size - 1)) ||
	    size_mask < 255 || (size_mask & (size_mask + 1))) {
		fprintf(stderr, "usage: %s [PAIRS [WINDOW (power of 2 <= %d) [MAX_SIZE (power of 2 >= 256)]]]\n",
			argv[0], WINDOW_MAX);
		return 2;
	}
	worker_t w[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (worker_t){ .rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1), .pairs = pairs };
		if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
			return 1;
	}
	uint64_t checksum = 0;
	int64_t cpu_ns = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		checksum = checksum * 31 + w[i].checksum;
		cpu_ns += w[i].cpu_ns;
	}
	printf("checksum=%016" PRIx64 " pairs=%" PRIu64 " worker_cpu_ns=%" PRId64 " hwm_kb=%ld\n",
	       checksum, pairs * THREADS, cpu_ns, peak_rss_kb());
	return 0;
}
