/* cpu_work.c — the CPU-bound workload of `make bench`.
 *
 * Two threads each run the same deterministic loop: fill an array from a
 * seeded PRNG, sort it with a recursive merge sort, hash it with a recursive
 * halving tree, and fold the result through a recursive arithmetic chain.
 * That gives a profiler a realistic mix: many calls and returns, stacks 5 to
 * 15 frames deep (thread start -> worker -> round -> sort/hash/chain levels),
 * nothing blocking, no allocation in the hot loop, no system calls.
 *
 * Everything is seeded and the threads' results are combined in a fixed
 * order, so the printed checksum is the same on every run, profiled or not:
 * bench/run.sh compares it to catch a profiler that corrupts the program.
 *
 *   usage: cpu_work [ROUNDS]     (default sized for ~2.5 s on the bench box)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

enum {
	THREADS = 2,
	ELEMS = 4096,     /* merge sort recursion: log2(4096/16) = 8 levels */
	SORT_CUTOFF = 16, /* below this, insertion sort (one more frame) */
	HASH_LEAF = 32,   /* hash tree: log2(4096/32) = 7 levels */
	CHAIN_DEPTH = 12, /* arithmetic chain: 12 nested frames */
	DEFAULT_ROUNDS = 9500,
};

static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Out of line on purpose: each comparison is a real call, so samples land
 * at several depths of the same stack, not only in one flattened loop. */
NOINLINE static int cmp_u32(uint32_t a, uint32_t b)
{
	return (a > b) - (a < b);
}

NOINLINE static void insertion_sort(uint32_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t v = a[i];
		size_t j = i;
		while (j > 0 && cmp_u32(a[j - 1], v) > 0) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = v;
	}
}

NOINLINE static void merge(uint32_t *a, uint32_t *tmp, size_t mid, size_t n)
{
	size_t i = 0, j = mid, k = 0;
	while (i < mid && j < n)
		tmp[k++] = cmp_u32(a[i], a[j]) <= 0 ? a[i++] : a[j++];
	while (i < mid)
		tmp[k++] = a[i++];
	while (j < n)
		tmp[k++] = a[j++];
	memcpy(a, tmp, n * sizeof *a);
}

NOINLINE static void merge_sort(uint32_t *a, uint32_t *tmp, size_t n)
{
	if (n <= SORT_CUTOFF) {
		insertion_sort(a, n);
		return;
	}
	size_t mid = n / 2;
	merge_sort(a, tmp, mid);
	merge_sort(a + mid, tmp + mid, n - mid);
	merge(a, tmp, mid, n);
}

/* A non-associative mixing step, out of line, so the compiler can neither
 * inline it nor turn the recursions below into loops. */
NOINLINE static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
	h *= 0xFF51AFD7ED558CCDULL;
	return h ^ (h >> 33);
}

NOINLINE static uint64_t hash_leaf(const uint32_t *a, size_t n)
{
	uint64_t h = 0xCBF29CE484222325ULL; /* FNV-1a over the bytes */
	for (size_t i = 0; i < n; i++) {
		uint32_t v = a[i];
		for (int b = 0; b < 4; b++) {
			h ^= (v >> (8 * b)) & 0xFF;
			h *= 0x100000001B3ULL;
		}
	}
	return h;
}

NOINLINE static uint64_t hash_tree(const uint32_t *a, size_t n)
{
	if (n <= HASH_LEAF)
		return hash_leaf(a, n);
	size_t mid = n / 2;
	uint64_t l = hash_tree(a, mid);
	uint64_t r = hash_tree(a + mid, n - mid);
	return mix(l, r);
}

/* f(x, d) = mix(f(x * k + d, d - 1), x): a linear recursion that is not a
 * tail call, so every level keeps a frame. */
NOINLINE static uint64_t chain(uint64_t x, int depth)
{
	if (depth == 0)
		return mix(x, 0x5851F42D4C957F2DULL);
	uint64_t inner = chain(x * 6364136223846793005ULL + (uint64_t)depth, depth - 1);
	return mix(inner, x);
}

NOINLINE static uint64_t one_round(uint32_t *a, uint32_t *tmp, uint64_t *rng)
{
	for (size_t i = 0; i < ELEMS; i++)
		a[i] = (uint32_t)xorshift64s(rng);
	merge_sort(a, tmp, ELEMS);
	uint64_t h = hash_tree(a, ELEMS);
	for (int k = 0; k < 1024; k++)
		h = chain(h + (uint64_t)k, CHAIN_DEPTH);
	return h;
}

struct worker {
	pthread_t tid;
	unsigned id;
	long rounds;
	uint64_t result;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	static _Thread_local uint32_t a[ELEMS], tmp[ELEMS];
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (w->id + 1);
	uint64_t acc = w->id;
	for (long r = 0; r < w->rounds; r++)
		acc = mix(acc, one_round(a, tmp, &rng));
	/* Check the sort really sorted, so a broken build cannot pass. */
	for (size_t i = 1; i < ELEMS; i++)
		if (a[i - 1] > a[i]) {
			fprintf(stderr, "cpu_work: thread %u: array not sorted\n", w->id);
			abort();
		}
	w->result = acc;
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = DEFAULT_ROUNDS;
	if (argc > 1) {
		char *end;
		rounds = strtol(argv[1], &end, 10);
		if (*end || rounds <= 0) {
			fprintf(stderr, "usage: %s [ROUNDS>0]\n", argv[0]);
			return 2;
		}
	}

	struct worker w[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.id = i, .rounds = rounds};
		int rc = pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
		if (rc) {
			fprintf(stderr, "cpu_work: pthread_create: %s\n", strerror(rc));
			return 1;
		}
	}
	uint64_t sum = 0;
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(w[i].tid, NULL);
		sum = mix(sum, w[i].result); /* fixed order: deterministic */
	}
	printf("checksum=%016" PRIx64 " rounds=%ld threads=%d\n", sum, rounds, THREADS);
	return 0;
}
