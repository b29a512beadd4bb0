/* stacks.c — the table of unique stacks and their counters, shared by
 * every profile kind.
 *
 * CPROF_SIGSAFE: cprof_stacks_insert runs in the CPU timer handler and in
 * wrappers (malloc, locks, blocking calls). It takes no lock and never
 * waits for another thread, so a handler that interrupts an insert on its
 * own thread cannot deadlock.
 *
 * Layout, all mmap'd once at start-up and never grown:
 *   first[]  a one-page open-addressing index for the first FIRST_STACKS
 *            stacks, each 64-bit slot 0 (empty) or 1 + the word offset of
 *            an entry in the pool, with the top half of its hash above;
 *   slots[]  the same for every later stack, 2x the stack capacity;
 *   pool[]   entries laid one after another by an atomic bump pointer:
 *            a cprof_stack_t header and its frames;
 *   list[]   the published entries in order, so a dump walks only what
 *            exists, not the whole (mostly untouched) index.
 * An entry is written completely before a compare-and-swap publishes it in
 * a slot, so whoever sees the slot sees the whole entry. Two threads adding
 * the same new stack at once race for the same slot: the loser finds the
 * winner's entry there, equal to its own, and uses it (its own copy stays
 * unused in the pool). Nobody waits. The pool is sized for every stack at
 * the full depth; unused pages cost no memory until touched.
 *
 * Why two indexes: a new stack lands on a random page of slots[] (512 KiB
 * at the defaults), so each of a short process's first stacks faulted in a
 * page of its own, in the CPU timer's handler (11 faults a run of the exit
 * benchmark; perf put a fifth of its CPU samples' cost there). The first
 * FIRST_STACKS CPU stacks go to first[], one page; once it holds that many
 * it takes no more (it stays at most half full, so a probe for a stack it
 * lacks ends at an empty slot), and a CPU lookup that misses it goes on to
 * slots[]. Other kinds (recorded in wrappers, not in a handler) go to
 * slots[] only: once first[] was full, each of their lookups paid a probe
 * of it too. An entry is never moved, so whoever finds it once
 * finds it again in the same index. Two threads adding the same new stack
 * just as first[] fills may publish one entry in each index: two samples
 * with the same stack, which every reader adds up.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define FIRST_SLOTS 512               /* one page of 64-bit slots */
#define FIRST_STACKS (FIRST_SLOTS / 2)
/* A slot is the entry's ref in its low half and the top half of the
 * stack's hash in its high half, so a probe reads only the entries whose
 * hash matches: each entry read is a cache miss of its own at a heap
 * sample's rate (perf on bench/heap_work: 85% of the probe's time was
 * those loads, 2 to 4 of them a lookup, with a table of thousands of
 * entries, one per stack and size). */
#define SLOT_CHECK 0xffffffff00000000ULL
/* 4 MiB of index pages: CPROF_STACKS up to 256 Ki; past that, every
 * probe of a later page is a read-modify-write (see slot_load). */
#define WRITTEN_WORDS 16

/* Three groups of a line or more each: what every insert reads, the
 * counters each new entry writes, and the written-page bits, which every
 * probe reads and only a first touch writes. */
typedef struct stack_table {
	_Atomic uint64_t *first;  /* FIRST_SLOTS */
	_Atomic uint64_t *slots;
	_Atomic uint32_t *list;  /* published entry refs, densely */
	size_t slot_mask;       /* slot count - 1 (a power of two) */
	uint64_t *pool;         /* 8-byte words */
	size_t pool_words;
	unsigned max_depth;
	size_t map_bytes;       /* slots + pool, one mapping */
	cprof_stack_t *dropped[CPROF_KIND_COUNT];
	CPROF_OWN_LINE _Atomic size_t pool_used;
	_Atomic unsigned first_used;
	_Atomic unsigned used;
	_Atomic unsigned full_events;
	/* Pages of first[] and slots[] (counted from first[]) known to have
	 * been written: see slot_load. */
	CPROF_OWN_LINE _Atomic uint64_t written[WRITTEN_WORDS];
} stack_table_t;

static stack_table_t table CPROF_OWN_LINE;

static uint64_t stack_hash(cprof_kind_t kind, uint64_t tag, uint32_t labels,
			   const uintptr_t *frames, unsigned depth)
{
	uint64_t h = cprof_mix64(((uint64_t)kind << 32 | depth) ^
				 cprof_mix64(tag + 0x9e3779b97f4a7c15ULL + ((uint64_t)labels << 40)));
	for (unsigned i = 0; i < depth; i++)
		h = cprof_mix64(h ^ frames[i]) + i;
	return h;
}

static size_t entry_words(unsigned depth)
{
	return (sizeof(cprof_stack_t) + depth * sizeof(uintptr_t) + 7) / 8;
}

static cprof_stack_t *entry_at(uint32_t slot_value)
{
	return (cprof_stack_t *)(table.pool + (slot_value - 1));
}

/* Takes room for one entry from the pool; NULL when it does not fit (a
 * shallower stack may still fit later). */
static cprof_stack_t *pool_take(unsigned depth, uint32_t *ref)
{
	size_t words = entry_words(depth);
	size_t at = atomic_load_explicit(&table.pool_used, memory_order_relaxed);
	do {
		if (at + words > table.pool_words || at + 1 > UINT32_MAX)
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(&table.pool_used, &at, at + words,
							memory_order_relaxed,
							memory_order_relaxed));
	*ref = (uint32_t)at + 1;
	return (cprof_stack_t *)(table.pool + at);
}

static cprof_stack_t *make_dropped_entry(cprof_kind_t kind)
{
	uint32_t ref;
	cprof_stack_t *s = pool_take(1, &ref);
	if (!s)
		return NULL;
	s->kind = kind;
	s->depth = 1;
	s->tag = 0;
	s->labels = 0;
	s->frames[0] = CPROF_FRAME_DROPPED;
	s->hash = stack_hash(kind, 0, 0, s->frames, 1);
	return s;
}

int cprof_stacks_init(unsigned stacks, unsigned max_depth)
{
	size_t slots = 1;
	while (slots < (size_t)stacks * 2)
		slots <<= 1;
	/* Room for every stack at the full depth: address space only, the
	 * pages real (mostly shallow) stacks never reach are never touched. */
	size_t pool_words = (size_t)stacks * entry_words(max_depth) +
			    CPROF_KIND_COUNT * entry_words(1);
	if (pool_words >= UINT32_MAX)
		pool_words = UINT32_MAX - 1; /* refs are 32-bit word offsets */
	size_t slot_bytes = (slots * sizeof(uint64_t) + 4095) & ~(size_t)4095;
	size_t list_bytes = (slots * sizeof(uint32_t) + 4095) & ~(size_t)4095;
	size_t first_bytes = FIRST_SLOTS * sizeof(uint64_t);
	size_t bytes = first_bytes + slot_bytes + list_bytes + pool_words * 8;

	void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	table.first = mem;
	table.slots = (_Atomic uint64_t *)((char *)mem + first_bytes);
	table.slot_mask = slots - 1;
	table.list = (_Atomic uint32_t *)((char *)mem + first_bytes + slot_bytes);
	table.pool = (uint64_t *)((char *)mem + first_bytes + slot_bytes + list_bytes);
	table.pool_words = pool_words;
	table.max_depth = max_depth;
	table.map_bytes = bytes;
	cprof_stacks_reset();
	return 0;
}

void cprof_stacks_reset(void)
{
	/* Replacing the mapping in place gives zero pages without touching
	 * (or, in a fork child, copying) any of the old ones. */
	if (!table.slots)
		return;
	if (mmap((void *)table.first, table.map_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) {
		/* Old entries would be overwritten while still indexed: stop
		 * recording instead (cprof_stacks_insert sees no table). */
		table.slots = NULL;
		return;
	}
	for (int i = 0; i < WRITTEN_WORDS; i++)
		atomic_store(&table.written[i], 0);
	atomic_store(&table.pool_used, 0);
	atomic_store(&table.first_used, 0);
	atomic_store(&table.used, 0);
	atomic_store(&table.full_events, 0);
	for (int k = 0; k < CPROF_KIND_COUNT; k++)
		table.dropped[k] = make_dropped_entry((cprof_kind_t)k);
}

static bool same_stack(const cprof_stack_t *s, uint64_t hash, cprof_kind_t kind, uint64_t tag,
		       uint32_t labels, const uintptr_t *frames, unsigned depth)
{
	return s->hash == hash && s->kind == (uint32_t)kind && s->depth == depth &&
	       s->tag == tag && s->labels == labels &&
	       memcmp(s->frames, frames, depth * sizeof *frames) == 0;
}

/* A slot's value. The first touch of an index page must be a write: a
 * load would map the shared zero page, and the compare-and-swap after it
 * would copy that, which flushes the other CPUs' TLBs (an interrupt each,
 * 20 to 40 us in this VM: most of what a short process paid for its CPU
 * samples). So a slot of a page not yet known written is read by a
 * read-modify-write that changes nothing; once the page's bit is set,
 * by a load, which leaves the line shared between the cores that probe
 * it (two threads' heap samples on one hot index line took it from each
 * other at every probe). */
/* Whether the index page of a slot is known written (its page number in
 * *page; pages past the bits are never known). */
CPROF_SIGSAFE static inline bool slot_page_written(const _Atomic uint64_t *at, size_t *page)
{
	*page = (size_t)((const char *)at - (const char *)table.first) >> 12;
	return *page < WRITTEN_WORDS * 64 &&
	       (atomic_load_explicit(&table.written[*page >> 6], memory_order_relaxed) &
		(1ULL << (*page & 63)));
}

CPROF_SIGSAFE static inline uint64_t slot_load(_Atomic uint64_t *at)
{
	size_t page;
	if (slot_page_written(at, &page))
		return atomic_load_explicit(at, memory_order_acquire);
	uint64_t word = atomic_fetch_add_explicit(at, 0, memory_order_acquire);
	if (page < WRITTEN_WORDS * 64)
		atomic_fetch_or_explicit(&table.written[page >> 6], 1ULL << (page & 63),
					 memory_order_relaxed);
	return word;
}

/* One index's probe for the stack: its entry; NULL when the index does
 * not have it and does not take it (`takes` false), or, with *full, when
 * the table is full. `fresh` is the new entry, made from the pool at the
 * first empty slot that may take it. */
CPROF_SIGSAFE static cprof_stack_t *probe(_Atomic uint64_t *slots, size_t mask, bool takes,
					  uint64_t hash, cprof_kind_t kind, uint64_t tag,
					  uint32_t labels, const uintptr_t *frames, unsigned depth,
					  cprof_stack_t **fresh, uint32_t *fresh_ref, bool *full)
{
	size_t idx = hash & mask;
	uint64_t check = hash & SLOT_CHECK;
	/* Linear probing; an index is at most half full (capacity checks
	 * below), so a probe sequence is short. */
	for (size_t n = 0; n <= mask; n++, idx = (idx + 1) & mask) {
		uint64_t word = slot_load(&slots[idx]);
		if (word == 0) {
			if (!takes)
				return NULL;
			if (!*fresh) {
				unsigned used = atomic_load_explicit(&table.used, memory_order_relaxed);
				if (used >= (table.slot_mask + 1) / 2 ||
				    !(*fresh = pool_take(depth, fresh_ref))) {
					*full = true;
					return NULL;
				}
				cprof_stack_t *f = *fresh;
				f->hash = hash;
				f->kind = kind;
				f->depth = depth;
				f->tag = tag;
				f->labels = labels;
				for (int i = 0; i < CPROF_VALUES_MAX; i++)
					atomic_init(&f->values[i], 0);
				memcpy(f->frames, frames, depth * sizeof *frames);
			}
			uint64_t expected = 0;
			if (atomic_compare_exchange_strong_explicit(&slots[idx], &expected,
								    check | *fresh_ref,
								    memory_order_release,
								    memory_order_acquire)) {
				unsigned at = atomic_fetch_add_explicit(&table.used, 1,
									memory_order_relaxed);
				atomic_store_explicit(&table.list[at], *fresh_ref,
						      memory_order_release);
				return *fresh;
			}
			word = expected; /* somebody published here first */
		}
		if ((word & SLOT_CHECK) != check)
			continue; /* another stack's: its entry is not read */
		cprof_stack_t *s = entry_at((uint32_t)word);
		if (same_stack(s, hash, kind, tag, labels, frames, depth))
			return s; /* a taken `fresh` stays unused: rare, bounded */
	}
	/* Every slot taken: first[] may overfill by the inserts that raced
	 * for its last place; slots[] never (the capacity check). */
	*full = slots != table.first;
	return NULL;
}

/* The lines every insert reads before its slot: asked for ahead. */
CPROF_SIGSAFE void cprof_stacks_warm(void)
{
	__builtin_prefetch(&table.slots);
	__builtin_prefetch(&table.written[0]);
}

/* A stack's key: its hash, with the labels of the thread the event
 * happened on (samples with different label sets are different samples),
 * and its first index slot asked for. */
CPROF_SIGSAFE cprof_stack_key_t cprof_stacks_key(cprof_kind_t kind, uint64_t tag,
						 const uintptr_t *frames, unsigned depth)
{
	cprof_stack_key_t key = { 0, cprof_thread.labels };
	if (CPROF_UNLIKELY(!table.slots))
		return key;
	if (depth > table.max_depth)
		depth = table.max_depth;
	key.hash = stack_hash(kind, tag, key.labels, frames, depth);
	/* The slot a probe of slots[] reads first; a CPU lookup reads
	 * first[]'s, a page that its samples keep warm. */
	if (kind != CPROF_KIND_CPU)
		__builtin_prefetch(&table.slots[key.hash & table.slot_mask]);
	return key;
}

CPROF_SIGSAFE void cprof_stacks_fetch(cprof_stack_key_t key)
{
	if (CPROF_UNLIKELY(!table.slots))
		return;
	/* Only a slot of a page already written: a load of any other would
	 * map the shared zero page there, and the insert's write after it
	 * would copy it and flush the other CPUs' TLBs (see slot_load; the
	 * first version of this read made a new entry cost 4,800 cycles). */
	_Atomic uint64_t *at_slot = &table.slots[key.hash & table.slot_mask];
	size_t page;
	if (!slot_page_written(at_slot, &page))
		return;
	uint64_t word = atomic_load_explicit(at_slot, memory_order_relaxed);
	if (word == 0 || (word & SLOT_CHECK) != (key.hash & SLOT_CHECK))
		return;
	const char *at = (const char *)entry_at((uint32_t)word);
	/* The header, the counters and the first frames: the lines that a
	 * heap entry's insert and count read (a stack of up to 6 frames). */
	__builtin_prefetch(at);
	__builtin_prefetch(at + 64);
	__builtin_prefetch(at + 127);
}

CPROF_SIGSAFE cprof_stack_t *cprof_stacks_insert(cprof_kind_t kind, uint64_t tag,
						 const uintptr_t *frames, unsigned depth)
{
	return cprof_stacks_insert_key(kind, tag, frames, depth,
				       cprof_stacks_key(kind, tag, frames, depth));
}

CPROF_SIGSAFE cprof_stack_t *cprof_stacks_insert_key(cprof_kind_t kind, uint64_t tag,
						     const uintptr_t *frames, unsigned depth,
						     cprof_stack_key_t key)
{
	if (CPROF_UNLIKELY(!table.slots))
		return NULL;
	if (depth > table.max_depth)
		depth = table.max_depth;
	uint32_t labels = key.labels;
	uint64_t hash = key.hash;
	cprof_stack_t *fresh = NULL, *s;
	uint32_t fresh_ref = 0;
	bool full = false;

	/* first[] takes a stack while it holds fewer than FIRST_STACKS: the
	 * count is taken before the slot, so it never holds more than
	 * FIRST_STACKS plus the inserts racing for the last one. */
	if (kind == CPROF_KIND_CPU) {
		bool first_takes = atomic_load_explicit(&table.first_used, memory_order_relaxed) <
				   FIRST_STACKS;
		s = probe(table.first, FIRST_SLOTS - 1, first_takes, hash, kind, tag, labels,
			  frames, depth, &fresh, &fresh_ref, &full);
		if (s) {
			if (s == fresh)
				atomic_fetch_add_explicit(&table.first_used, 1,
							  memory_order_relaxed);
			return s;
		}
	}
	if (!full)
		s = probe(table.slots, table.slot_mask, true, hash, kind, tag, labels, frames,
			  depth, &fresh, &fresh_ref, &full);
	if (s)
		return s;
	atomic_fetch_add_explicit(&table.full_events, 1, memory_order_relaxed);
	return table.dropped[kind];
}

void cprof_stacks_foreach(cprof_kind_t kind, void (*fn)(const cprof_stack_t *s, void *ctx),
			  void *ctx)
{
	if (!table.slots)
		return;
	/* An index in [0, used) whose ref is still 0 is being published by
	 * an insert right now: its first event lands in the next dump. */
	unsigned used = atomic_load_explicit(&table.used, memory_order_acquire);
	for (unsigned i = 0; i < used && i <= table.slot_mask; i++) {
		uint32_t ref = atomic_load_explicit(&table.list[i], memory_order_acquire);
		if (ref && entry_at(ref)->kind == (uint32_t)kind)
			fn(entry_at(ref), ctx);
	}
	cprof_stack_t *dropped = table.dropped[kind];
	if (dropped)
		fn(dropped, ctx);
}

static void note_nonzero(const cprof_stack_t *s, void *ctx)
{
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		if (atomic_load_explicit(&s->values[i], memory_order_relaxed) != 0)
			*(bool *)ctx = true;
}

bool cprof_stacks_any(cprof_kind_t kind)
{
	bool any = false;
	cprof_stacks_foreach(kind, note_nonzero, &any);
	return any;
}

unsigned cprof_stacks_used(void)
{
	return atomic_load(&table.used);
}
