/* labels.c — the label API (include/cprof.h) under the shim.
 *
 *   labels split       two threads, the same CPU work (burn()), one under
 *                      tenant=acme, the other tenant=globex, both op=work;
 *                      prints each thread's CPU ns ("cpu_ns acme N")
 *   labels heap        keeps 8 MiB allocated under tenant=acme op=load and
 *                      2 MiB under tenant=globex, 1 MiB with no label
 *   labels nested      tenant=acme, then op=inner inside it (burn_inner),
 *                      a thread made inside it (burn_child), and after
 *                      the pop burn_after with no labels
 *   labels full N      N distinct tenants in turn, each 10 ms of CPU work
 *   labels cost N      N push+pop pairs of two labels; prints ns_per_pair
 *   labels pageend     values of 1 to 31 bytes ending near the end of a page
 *                      whose next page is unmapped, each pushed twice (the
 *                      same set both times), again with a byte past its NUL
 *                      changed (the same set) and with one of its own bytes
 *                      changed (another set); prints "pageend checks N
 *                      wrong M", exits 1 if M > 0 (a read into the unmapped
 *                      page would crash it)
 * Without the shim every mode runs the same (push returns 0).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cprof.h"

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile uint64_t sink;

/* CPU work until this thread has used `ns` of CPU. */
__attribute__((noinline)) static void burn(int64_t ns)
{
	int64_t end = thread_cpu_ns() + ns;
	uint64_t x = 1;
	while (thread_cpu_ns() < end)
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

/* Each calls burn and then touches sink, so burn's return address is in
 * it (a tail call would leave no frame of it in the samples). */
__attribute__((noinline)) static void burn_inner(int64_t ns) { burn(ns); sink++; }
__attribute__((noinline)) static void burn_after(int64_t ns) { burn(ns); sink++; }
__attribute__((noinline)) static void burn_child(int64_t ns) { burn(ns); sink++; }

static void *split_worker(void *arg)
{
	const char *tenant = arg;
	/* The value is copied at the push: the buffer may change later. */
	char value[32];
	snprintf(value, sizeof value, "%s", tenant);
	cprof_labels_t old = cprof_labels_push("tenant", value, "op", "work", NULL);
	memset(value, 'x', sizeof value - 1);
	int64_t t0 = thread_cpu_ns();
	burn(600000000);
	int64_t used = thread_cpu_ns() - t0;
	cprof_labels_pop(old);
	fprintf(stderr, "cpu_ns %s %lld\n", tenant, (long long)used);
	return NULL;
}

static void *child_main(void *arg)
{
	(void)arg;
	burn_child(200000000);
	return NULL;
}

static void *keep[64];

__attribute__((noinline)) static void load_blocks(int from, int count, size_t size)
{
	for (int i = from; i < from + count; i++) {
		keep[i] = malloc(size);
		memset(keep[i], 1, size);
	}
}

/* The label set a push of key=value makes: what a second push sees as
 * its previous set. */
static cprof_labels_t set_of(const char *value)
{
	cprof_labels_t old = cprof_labels_push("key", value, NULL);
	cprof_labels_t id = cprof_labels_push("probe", "1", NULL);
	cprof_labels_pop(id);
	cprof_labels_pop(old);
	return id;
}

static int page_end_checks(void)
{
	char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED || munmap(page + 4096, 4096) != 0)
		return 2;
	int checks = 0, wrong = 0;
	for (int len = 1; len <= 31; len++) {
		for (int at = 4096 - 40; at + len + 1 <= 4096; at++) {
			char *v = page + at;
			memset(page + 4096 - 48, 'x', 48);
			memset(v, 'v', (size_t)len);
			v[len] = 0;
			cprof_labels_t first = set_of(v), again = set_of(v);
			wrong += again != first;
			checks++;
			if (at + len + 1 < 4096) {
				v[len + 1] ^= 1; /* past the NUL: the same text */
				wrong += set_of(v) != first;
				checks++;
			}
			v[len - 1] = 'w'; /* the text itself */
			wrong += first != 0 && set_of(v) == first;
			checks++;
		}
	}
	printf("pageend checks %d wrong %d\n", checks, wrong);
	return wrong ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "split";
	if (strcmp(mode, "split") == 0) {
		pthread_t a, b;
		pthread_create(&a, NULL, split_worker, "acme");
		pthread_create(&b, NULL, split_worker, "globex");
		pthread_join(a, NULL);
		pthread_join(b, NULL);
	} else if (strcmp(mode, "heap") == 0) {
		cprof_labels_t old = cprof_labels_push("tenant", "acme", "op", "load", NULL);
		load_blocks(0, 8, 1 << 20);
		cprof_labels_pop(old);
		old = cprof_labels_push("tenant", "globex", NULL);
		load_blocks(8, 2, 1 << 20);
		cprof_labels_pop(old);
		load_blocks(10, 1, 1 << 20);
	} else if (strcmp(mode, "nested") == 0) {
		cprof_labels_t outer = cprof_labels_push("tenant", "acme", NULL);
		cprof_labels_t inner = cprof_labels_push("op", "inner", NULL);
		burn_inner(200000000);
		pthread_t t;
		pthread_create(&t, NULL, child_main, NULL);
		pthread_join(t, NULL);
		cprof_labels_pop(inner);
		cprof_labels_pop(outer);
		burn_after(200000000);
	} else if (strcmp(mode, "full") == 0) {
		int n = argc > 2 ? atoi(argv[2]) : 100;
		for (int i = 0; i < n; i++) {
			char tenant[16];
			snprintf(tenant, sizeof tenant, "t%d", i);
			cprof_labels_t old = cprof_labels_push("tenant", tenant, NULL);
			burn(10000000);
			cprof_labels_pop(old);
		}
	} else if (strcmp(mode, "pageend") == 0) {
		return page_end_checks();
	} else if (strcmp(mode, "cost") == 0) {
		long n = argc > 2 ? atol(argv[2]) : 10000000;
		const char *tenants[2] = { "acme", "globex" };
		int64_t t0 = mono_ns();
		for (long i = 0; i < n; i++) {
			cprof_labels_t old =
				cprof_labels_push("tenant", tenants[i & 1], "op", "checkout", NULL);
			cprof_labels_pop(old);
		}
		printf("ns_per_pair %.2f\n", (double)(mono_ns() - t0) / (double)n);
	} else {
		fprintf(stderr, "labels: unknown mode %s\n", mode);
		return 2;
	}
	printf("done %s\n", mode);
	return 0;
}
