/* sources.c — the registry of profile kinds: one row per kind says what
 * its file holds (name, sample types and units, period type, default
 * type, numeric tag, comment) and how it lives (start in the constructor
 * when enabled, atfork_child in every forked child, stop at the end, and,
 * for a snapshot kind, collect before each build). pprof.c writes, dump.c
 * and the endpoint walk, init.c starts and forks the kinds through these
 * rows only; adding a kind is adding a row.
 *
 * The period and the values transform are registered by the source when
 * it starts (cprof_source_register): the period follows the settings and
 * the transform belongs with the sampler that knows its bias.
 *
 * The lifecycle hooks live in the shim's files; here they are weak, so the
 * core library (tools, unit tests) links without them (they are NULL
 * there, and nothing calls them).
 */
#include "cprof_internal.h"
#include "wait.h"

#include <stdio.h>

#define WEAK __attribute__((weak))
WEAK int cprof_cpu_start(void);
WEAK void cprof_cpu_stop(void);
WEAK void cprof_cpu_atfork_child(void);
WEAK int cprof_heap_start(void);
WEAK void cprof_heap_atfork_child(void);
WEAK int cprof_mutex_start(void);
WEAK void cprof_mutex_atfork_child(void);
WEAK int cprof_block_start(void);
WEAK void cprof_block_atfork_child(void);
WEAK int cprof_threads_start(void);
WEAK void cprof_threads_atfork_child(void);
WEAK int cprof_threads_collect(void);
WEAK void cprof_threads_foreach(cprof_entry_fn fn, void *ctx);
WEAK unsigned cprof_threads_labels(const cprof_stack_t *s, cprof_sample_label_t *out,
				   unsigned max);
WEAK bool cprof_threads_any(void);
WEAK void cprof_threads_comment(char *out, size_t cap);
WEAK int cprof_threads_text(cprof_symbolizer_t *sym, int debug, FILE *f);

static void cpu_comment(char *out, size_t cap)
{
	/* Threads beyond the fixed table of CPU timers are not sampled: say
	 * how many, here where the reader looks. */
	snprintf(out, cap, "libcprof cpu profile; cpu_hz=%u max_depth=%u threads_not_sampled=%u",
		 cprof_config.cpu_hz, cprof_config.max_depth,
		 atomic_load(&cprof_cpu_threads_not_sampled));
}

static void heap_comment(char *out, size_t cap)
{
	snprintf(out, cap, "libcprof heap profile; heap_rate=%lu max_depth=%u",
		 (unsigned long)cprof_config.heap_rate, cprof_config.max_depth);
}

static void mutex_comment(char *out, size_t cap)
{
	snprintf(out, cap, "libcprof mutex profile; mutex_fraction=%u max_depth=%u clock=%s",
		 cprof_config.mutex_fraction, cprof_config.max_depth, cprof_wait_clock_name());
}

static void block_comment(char *out, size_t cap)
{
	snprintf(out, cap, "libcprof block profile; block_rate=%lu max_depth=%u clock=%s",
		 (unsigned long)cprof_config.block_rate, cprof_config.max_depth,
		 cprof_wait_clock_name());
}

const cprof_source_t cprof_sources[CPROF_KIND_COUNT] = {
	[CPROF_KIND_CPU] = {
		.name = "cpu",
		.nvalues = 2,
		.types = { { "samples", "count" }, { "cpu", "nanoseconds" } },
		.period_type = { "cpu", "nanoseconds" },
		.default_type = "cpu",
		.comment = cpu_comment,
		.start = cprof_cpu_start,
		.stop = cprof_cpu_stop,
		.atfork_child = cprof_cpu_atfork_child,
	},
	[CPROF_KIND_HEAP] = {
		.name = "heap",
		.nvalues = 4,
		.types = { { "alloc_objects", "count" }, { "alloc_space", "bytes" },
			   { "inuse_objects", "count" }, { "inuse_space", "bytes" } },
		.period_type = { "space", "bytes" },
		.default_type = "inuse_space",
		.tag_label = { "bytes", "bytes" },
		.comment = heap_comment,
		.start = cprof_heap_start,
		.atfork_child = cprof_heap_atfork_child,
	},
	[CPROF_KIND_MUTEX] = {
		.name = "mutex",
		.nvalues = 2,
		.types = { { "contentions", "count" }, { "delay", "nanoseconds" } },
		.period_type = { "contentions", "count" },
		.default_type = "delay",
		.comment = mutex_comment,
		.start = cprof_mutex_start,
		.atfork_child = cprof_mutex_atfork_child,
	},
	[CPROF_KIND_BLOCK] = {
		.name = "block",
		.nvalues = 2,
		.types = { { "contentions", "count" }, { "delay", "nanoseconds" } },
		.period_type = { "contentions", "count" },
		.default_type = "delay",
		.comment = block_comment,
		.start = cprof_block_start,
		.atfork_child = cprof_block_atfork_child,
	},
	/* A snapshot at each dump, not a counter since the start (threads.c). */
	[CPROF_KIND_THREADS] = {
		.name = "threads",
		.nvalues = 1,
		.types = { { "threads", "count" } },
		.period_type = { "threads", "count" },
		.default_type = "threads",
		.comment = cprof_threads_comment,
		.start = cprof_threads_start,
		.atfork_child = cprof_threads_atfork_child,
		.collect = cprof_threads_collect,
		.foreach = cprof_threads_foreach,
		.labels = cprof_threads_labels,
		.any = cprof_threads_any,
		.text = cprof_threads_text,
	},
};

void cprof_threads_duration(int64_t ns, char *out, size_t cap)
{
	/* As Go's goroutine dump says how long one has waited. */
	int64_t s = ns / 1000000000;
	if (ns < 1000000000)
		snprintf(out, cap, "%lld ms", (long long)(ns / 1000000));
	else if (s < 120)
		snprintf(out, cap, "%lld seconds", (long long)s);
	else if (s < 7200)
		snprintf(out, cap, "%lld minutes", (long long)(s / 60));
	else
		snprintf(out, cap, "%lld hours", (long long)(s / 3600));
}

void cprof_source_foreach(cprof_kind_t kind, void (*fn)(const cprof_stack_t *s, void *ctx),
			  void *ctx)
{
	if (cprof_sources[kind].foreach)
		cprof_sources[kind].foreach(fn, ctx);
	else
		cprof_stacks_foreach(kind, fn, ctx);
}

bool cprof_source_any(cprof_kind_t kind)
{
	if (cprof_sources[kind].any)
		return cprof_sources[kind].any();
	return cprof_stacks_any(kind);
}
