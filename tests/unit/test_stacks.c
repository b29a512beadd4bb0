/* test_stacks.c — unit tests for preload/stacks.c, the lock-free table of
 * unique stacks:
 *   - insert then insert again finds the same entry (same pointer), with
 *     kind, tag, depth and frames as given and zeroed counters;
 *   - a different kind, tag, depth or any single frame makes a different
 *     entry, and each one is found again;
 *   - cprof_stack_add: counters add up, per entry and per counter;
 *   - cprof_stacks_foreach visits exactly the entries of one kind, each
 *     once, with their frames, plus that kind's [cprof: dropped] entry;
 *   - a stack deeper than max_depth keeps its max_depth leaf-most frames;
 *   - a full table (cprof_stacks_init(256, 8)) answers new stacks with the
 *     kind's dropped entry (frame CPROF_FRAME_DROPPED) and still finds the
 *     stacks it holds; a pool spent by deep stacks does the same;
 *   - 3000 CPU stacks, past the one-page index the first 256 go to, are
 *     each found again as the same entry and visited once;
 *   - cprof_stacks_reset empties the table and zeroes the dropped entries;
 *   - 4 pthreads inserting an overlapping set of new stacks at once and
 *     adding to them: per stack, the counters summed over its entries are
 *     exactly what was added (duplicate entries from races are allowed,
 *     lost counts are not) and every entry is intact.
 *
 * cprof_stacks_init maps a new table each time it is called (the old one
 * leaks, which is fine here), so every test starts with a table of its own
 * and no test depends on another.
 */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cprof_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */

static void new_table(unsigned stacks, unsigned max_depth)
{
	assert_int_equal(cprof_stacks_init(stacks, max_depth), 0);
	assert_int_equal(cprof_stacks_used(), 0);
}

static bool is_dropped(const cprof_stack_t *s)
{
	return s->depth == 1 && s->frames[0] == CPROF_FRAME_DROPPED;
}

static void assert_entry(const cprof_stack_t *s, cprof_kind_t kind, uint64_t tag,
			 const uintptr_t *frames, unsigned depth)
{
	assert_non_null(s);
	assert_int_equal(s->kind, kind);
	assert_int_equal(s->tag, tag);
	assert_int_equal(s->depth, depth);
	assert_memory_equal(s->frames, frames, depth * sizeof *frames);
}

/* Code-like addresses (above the pseudo-frame range), distinct per seed. */
static void make_frames(uintptr_t *frames, unsigned depth, uintptr_t seed)
{
	for (unsigned i = 0; i < depth; i++)
		frames[i] = 0x400000 + seed * 0x10000 + i * 0x10 + 3;
}

/* What cprof_stacks_foreach hands out, in the order it does. */
typedef struct visits {
	const cprof_stack_t **entries;
	size_t n, cap;
} visits_t;

static void collect(const cprof_stack_t *s, void *ctx)
{
	visits_t *v = ctx;
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->entries = realloc(v->entries, v->cap * sizeof *v->entries);
		if (!v->entries)
			abort();
	}
	v->entries[v->n++] = s;
}

static visits_t visit(cprof_kind_t kind)
{
	visits_t v = { NULL, 0, 0 };
	cprof_stacks_foreach(kind, collect, &v);
	return v;
}

/* How many times foreach handed out exactly this entry. */
static unsigned visits_of(const visits_t *v, const cprof_stack_t *s)
{
	unsigned n = 0;
	for (size_t i = 0; i < v->n; i++)
		n += v->entries[i] == s;
	return n;
}

/* The kind's dropped entry as foreach shows it; exactly one. */
static const cprof_stack_t *dropped_of(const visits_t *v, cprof_kind_t kind)
{
	const cprof_stack_t *found = NULL;
	for (size_t i = 0; i < v->n; i++) {
		if (!is_dropped(v->entries[i]))
			continue;
		assert_null(found);
		found = v->entries[i];
	}
	assert_non_null(found);
	assert_int_equal(found->kind, kind);
	assert_int_equal(found->tag, 0);
	return found;
}

/* ---- insert and find -------------------------------------------------- */

static void test_insert_then_find_same_entry(void **state)
{
	(void)state;
	new_table(1024, 16);
	uintptr_t frames[5], copy[5];
	make_frames(frames, 5, 1);
	memcpy(copy, frames, sizeof frames);

	cprof_stack_t *a = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, 5);
	assert_entry(a, CPROF_KIND_CPU, 0, frames, 5);
	assert_false(is_dropped(a));
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		assert_int_equal(atomic_load(&a->values[i]), 0);
	assert_int_equal(cprof_stacks_used(), 1);

	/* The table keeps its own copy: the caller's buffer may change. */
	frames[0] = 0xdead0000;
	assert_int_equal(a->frames[0], copy[0]);

	cprof_stack_t *b = cprof_stacks_insert(CPROF_KIND_CPU, 0, copy, 5);
	assert_ptr_equal(a, b);
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, 0, copy, 5), a);
	assert_int_equal(cprof_stacks_used(), 1);

	/* With a tag, the same holds. */
	cprof_stack_t *t = cprof_stacks_insert(CPROF_KIND_HEAP, 4096, copy, 5);
	assert_entry(t, CPROF_KIND_HEAP, 4096, copy, 5);
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_HEAP, 4096, copy, 5), t);
	assert_int_equal(cprof_stacks_used(), 2);
}

static void test_every_key_part_matters(void **state)
{
	(void)state;
	new_table(1024, 16);
	enum { DEPTH = 6 };
	uintptr_t base[DEPTH + 1];
	make_frames(base, DEPTH + 1, 2);

	/* The base stack and its variants, each differing in one thing. */
	enum { MAX_VARIANTS = 32 };
	struct variant {
		cprof_kind_t kind;
		uint64_t tag;
		unsigned depth;
		uintptr_t frames[DEPTH + 1];
		cprof_stack_t *entry;
	} v[MAX_VARIANTS];
	size_t n = 0;

	v[n] = (struct variant){ CPROF_KIND_CPU, 0, DEPTH, { 0 }, NULL };
	memcpy(v[n++].frames, base, sizeof base);
	for (int k = 1; k < CPROF_KIND_COUNT; k++) { /* kind */
		v[n] = (struct variant){ (cprof_kind_t)k, 0, DEPTH, { 0 }, NULL };
		memcpy(v[n++].frames, base, sizeof base);
	}
	for (uint64_t tag = 1; tag <= 2; tag++) { /* tag */
		v[n] = (struct variant){ CPROF_KIND_CPU, tag, DEPTH, { 0 }, NULL };
		memcpy(v[n++].frames, base, sizeof base);
	}
	v[n] = (struct variant){ CPROF_KIND_CPU, UINT64_MAX, DEPTH, { 0 }, NULL };
	memcpy(v[n++].frames, base, sizeof base);
	/* depth: a prefix (same leaf frames, root cut) and one frame more */
	v[n] = (struct variant){ CPROF_KIND_CPU, 0, DEPTH - 1, { 0 }, NULL };
	memcpy(v[n++].frames, base, sizeof base);
	v[n] = (struct variant){ CPROF_KIND_CPU, 0, DEPTH + 1, { 0 }, NULL };
	memcpy(v[n++].frames, base, sizeof base);
	v[n] = (struct variant){ CPROF_KIND_CPU, 0, 1, { 0 }, NULL };
	memcpy(v[n++].frames, base, sizeof base);
	for (unsigned i = 0; i < DEPTH; i++) { /* each frame, by one */
		v[n] = (struct variant){ CPROF_KIND_CPU, 0, DEPTH, { 0 }, NULL };
		memcpy(v[n].frames, base, sizeof base);
		v[n++].frames[i] += 1;
	}
	/* two frames swapped: same multiset, other order */
	v[n] = (struct variant){ CPROF_KIND_CPU, 0, DEPTH, { 0 }, NULL };
	memcpy(v[n].frames, base, sizeof base);
	v[n].frames[0] = base[1];
	v[n++].frames[1] = base[0];
	assert_true(n <= MAX_VARIANTS);

	for (size_t i = 0; i < n; i++) {
		v[i].entry = cprof_stacks_insert(v[i].kind, v[i].tag, v[i].frames, v[i].depth);
		assert_entry(v[i].entry, v[i].kind, v[i].tag, v[i].frames, v[i].depth);
		assert_false(is_dropped(v[i].entry));
		for (size_t j = 0; j < i; j++)
			assert_ptr_not_equal(v[i].entry, v[j].entry);
	}
	assert_int_equal(cprof_stacks_used(), n);
	/* Each found again, in another order, as itself. */
	for (size_t i = n; i-- > 0;)
		assert_ptr_equal(cprof_stacks_insert(v[i].kind, v[i].tag, v[i].frames,
						     v[i].depth), v[i].entry);
	assert_int_equal(cprof_stacks_used(), n);
}

/* ---- counters --------------------------------------------------------- */

static void test_counters_add_up(void **state)
{
	(void)state;
	new_table(1024, 16);
	uintptr_t f1[3], f2[3];
	make_frames(f1, 3, 3);
	make_frames(f2, 3, 4);
	cprof_stack_t *a = cprof_stacks_insert(CPROF_KIND_HEAP, 64, f1, 3);
	cprof_stack_t *b = cprof_stacks_insert(CPROF_KIND_HEAP, 64, f2, 3);
	assert_non_null(a);
	assert_non_null(b);

	int64_t want_a[CPROF_VALUES_MAX] = { 0 }, want_b[CPROF_VALUES_MAX] = { 0 };
	for (int64_t k = 1; k <= 100; k++) {
		for (int i = 0; i < CPROF_VALUES_MAX; i++) {
			int64_t d = k * (i + 1);
			cprof_stack_add(cprof_stacks_insert(CPROF_KIND_HEAP, 64, f1, 3), i, d);
			want_a[i] += d;
		}
		cprof_stack_add(b, 1, -k); /* negative amounts subtract */
		want_b[1] -= k;
	}
	cprof_stack_add(b, 3, INT64_C(1) << 40);
	want_b[3] += INT64_C(1) << 40;
	for (int i = 0; i < CPROF_VALUES_MAX; i++) {
		assert_int_equal(atomic_load(&a->values[i]), want_a[i]);
		assert_int_equal(atomic_load(&b->values[i]), want_b[i]);
	}
	assert_int_equal(want_a[0], 5050);
	assert_int_equal(want_b[1], -5050);
}

/* ---- foreach ---------------------------------------------------------- */

static void test_foreach_visits_exactly_one_kind(void **state)
{
	(void)state;
	new_table(1024, 16);
	enum { NCPU = 40, NHEAP = 25 };
	cprof_stack_t *cpu[NCPU], *heap[NHEAP];
	uintptr_t frames[16];

	for (unsigned i = 0; i < NCPU; i++) {
		unsigned depth = 1 + i % 16;
		make_frames(frames, depth, 100 + i);
		cpu[i] = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, depth);
		assert_non_null(cpu[i]);
		cprof_stack_add(cpu[i], 0, i + 1);
	}
	for (unsigned i = 0; i < NHEAP; i++) {
		unsigned depth = 1 + i % 5;
		/* half of them share a CPU stack's frames, with another kind */
		make_frames(frames, depth, i % 2 ? 100 + i : 500 + i);
		heap[i] = cprof_stacks_insert(CPROF_KIND_HEAP, 16 * i, frames, depth);
		assert_non_null(heap[i]);
	}
	assert_int_equal(cprof_stacks_used(), NCPU + NHEAP);

	visits_t v = visit(CPROF_KIND_CPU);
	assert_int_equal(v.n, NCPU + 1);
	for (unsigned i = 0; i < NCPU; i++) {
		unsigned depth = 1 + i % 16;
		make_frames(frames, depth, 100 + i);
		assert_int_equal(visits_of(&v, cpu[i]), 1);
		assert_entry(cpu[i], CPROF_KIND_CPU, 0, frames, depth);
		assert_int_equal(atomic_load(&cpu[i]->values[0]), i + 1);
	}
	const cprof_stack_t *cpu_dropped = dropped_of(&v, CPROF_KIND_CPU);
	for (size_t i = 0; i < v.n; i++)
		assert_int_equal(v.entries[i]->kind, CPROF_KIND_CPU);
	free(v.entries);

	v = visit(CPROF_KIND_HEAP);
	assert_int_equal(v.n, NHEAP + 1);
	for (unsigned i = 0; i < NHEAP; i++) {
		unsigned depth = 1 + i % 5;
		make_frames(frames, depth, i % 2 ? 100 + i : 500 + i);
		assert_int_equal(visits_of(&v, heap[i]), 1);
		assert_entry(heap[i], CPROF_KIND_HEAP, 16 * i, frames, depth);
	}
	const cprof_stack_t *heap_dropped = dropped_of(&v, CPROF_KIND_HEAP);
	assert_ptr_not_equal(cpu_dropped, heap_dropped);
	free(v.entries);

	/* A kind nobody recorded: its dropped entry only, at zero. */
	v = visit(CPROF_KIND_MUTEX);
	assert_int_equal(v.n, 1);
	assert_true(is_dropped(v.entries[0]));
	assert_int_equal(v.entries[0]->kind, CPROF_KIND_MUTEX);
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		assert_int_equal(atomic_load(&v.entries[0]->values[i]), 0);
	free(v.entries);
}

/* ---- depth ------------------------------------------------------------ */

static void test_depth_cut_to_max_depth(void **state)
{
	(void)state;
	enum { MAX = 8, DEEP = 20 };
	new_table(256, MAX);
	uintptr_t frames[DEEP];
	make_frames(frames, DEEP, 7);

	cprof_stack_t *deep = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, DEEP);
	assert_non_null(deep);
	assert_false(is_dropped(deep));
	/* The leaf-most MAX frames stay (frames are leaf first). */
	assert_entry(deep, CPROF_KIND_CPU, 0, frames, MAX);

	/* Anything that agrees on the first MAX frames is the same stack. */
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, MAX), deep);
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, MAX + 1), deep);
	frames[DEEP - 1] ^= 0x100; /* beyond the cut: makes no difference */
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, DEEP), deep);
	frames[MAX - 1] ^= 0x100; /* the last frame kept: does */
	cprof_stack_t *other = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, DEEP);
	assert_ptr_not_equal(other, deep);
	assert_entry(other, CPROF_KIND_CPU, 0, frames, MAX);
	/* Shallower stacks are kept whole. */
	cprof_stack_t *shallow = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, MAX - 1);
	assert_entry(shallow, CPROF_KIND_CPU, 0, frames, MAX - 1);
	assert_int_equal(cprof_stacks_used(), 3);
}

/* ---- a full table ----------------------------------------------------- */

static void test_full_table_gives_dropped_entry(void **state)
{
	(void)state;
	enum { CAP = 256, MAX = 8 };
	new_table(CAP, MAX);
	static cprof_stack_t *held[CAP];
	uintptr_t frames[MAX];

	/* `stacks` unique stacks fit, each of them the full max_depth deep. */
	for (unsigned i = 0; i < CAP; i++) {
		make_frames(frames, MAX, 1000 + i);
		cprof_kind_t kind = i % 3 ? CPROF_KIND_CPU : CPROF_KIND_HEAP;
		held[i] = cprof_stacks_insert(kind, i % 2, frames, MAX);
		assert_non_null(held[i]);
		assert_false(is_dropped(held[i]));
		assert_entry(held[i], kind, i % 2, frames, MAX);
		cprof_stack_add(held[i], 0, 1);
	}
	assert_int_equal(cprof_stacks_used(), CAP);

	/* One more: the CPU kind's dropped entry. */
	make_frames(frames, 3, 5000);
	cprof_stack_t *d = cprof_stacks_insert(CPROF_KIND_CPU, 0, frames, 3);
	assert_non_null(d);
	assert_true(is_dropped(d));
	assert_int_equal(d->frames[0], CPROF_FRAME_DROPPED);
	assert_int_equal(d->kind, CPROF_KIND_CPU);
	assert_int_equal(d->tag, 0);
	for (unsigned i = 0; i < CAP; i++)
		assert_ptr_not_equal(d, held[i]);
	cprof_stack_add(d, 0, 7);
	cprof_stack_add(d, 1, 700);

	/* Every further new stack of that kind lands there too, whatever its
	 * tag or depth; other kinds get their own dropped entry. */
	for (unsigned i = 0; i < 50; i++) {
		make_frames(frames, 1 + i % MAX, 6000 + i);
		cprof_stack_t *e = cprof_stacks_insert(CPROF_KIND_CPU, i, frames, 1 + i % MAX);
		assert_ptr_equal(e, d);
		cprof_stack_add(e, 0, 1);
	}
	make_frames(frames, 2, 7000);
	cprof_stack_t *dh = cprof_stacks_insert(CPROF_KIND_HEAP, 32, frames, 2);
	assert_true(is_dropped(dh));
	assert_int_equal(dh->kind, CPROF_KIND_HEAP);
	assert_ptr_not_equal(dh, d);
	cprof_stack_t *dm = cprof_stacks_insert(CPROF_KIND_MUTEX, 0, frames, 2);
	assert_true(is_dropped(dm));
	assert_int_equal(dm->kind, CPROF_KIND_MUTEX);
	assert_ptr_not_equal(dm, d);
	assert_ptr_not_equal(dm, dh);
	/* Even a stack spelled like the dropped entry is just one more new
	 * stack: the dropped entry is not in the index. */
	uintptr_t pseudo = CPROF_FRAME_DROPPED;
	assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, 0, &pseudo, 1), d);

	/* The stacks held are all still found, as themselves. */
	for (unsigned i = 0; i < CAP; i++) {
		make_frames(frames, MAX, 1000 + i);
		cprof_kind_t kind = i % 3 ? CPROF_KIND_CPU : CPROF_KIND_HEAP;
		assert_ptr_equal(cprof_stacks_insert(kind, i % 2, frames, MAX), held[i]);
		assert_int_equal(atomic_load(&held[i]->values[0]), 1);
	}
	assert_int_equal(cprof_stacks_used(), CAP);
	assert_int_equal(atomic_load(&d->values[0]), 7 + 50);
	assert_int_equal(atomic_load(&d->values[1]), 700);

	/* foreach: the held CPU stacks and the one dropped entry. */
	visits_t v = visit(CPROF_KIND_CPU);
	unsigned want = 0;
	for (unsigned i = 0; i < CAP; i++) {
		if (held[i]->kind != CPROF_KIND_CPU)
			continue;
		want++;
		assert_int_equal(visits_of(&v, held[i]), 1);
	}
	assert_int_equal(v.n, want + 1);
	assert_ptr_equal(dropped_of(&v, CPROF_KIND_CPU), d);
	free(v.entries);
}

/* The pool is sized for every stack at the full depth: exactly CAP stacks
 * of MAX frames fit, the next one is dropped, and the ones held are still
 * found. */
static void test_full_depth_stacks_all_fit(void **state)
{
	(void)state;
	enum { CAP = 256, MAX = 64 };
	new_table(CAP, MAX);
	static cprof_stack_t *held[CAP + 1];
	uintptr_t frames[MAX];
	unsigned fitted = 0;

	for (unsigned i = 0; i <= CAP; i++) {
		make_frames(frames, MAX, 2000 + i);
		cprof_stack_t *s = cprof_stacks_insert(CPROF_KIND_BLOCK, 0, frames, MAX);
		assert_non_null(s);
		if (is_dropped(s)) {
			assert_int_equal(s->kind, CPROF_KIND_BLOCK);
			break;
		}
		assert_entry(s, CPROF_KIND_BLOCK, 0, frames, MAX);
		held[fitted++] = s;
	}
	printf("[  INFO    ] stacks(%u, %u): %u stacks %u deep fit before the drop\n",
	       CAP, MAX, fitted, MAX);
	assert_int_equal(fitted, CAP);
	assert_int_equal(cprof_stacks_used(), fitted);
	for (unsigned i = 0; i < fitted; i++) {
		make_frames(frames, MAX, 2000 + i);
		assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_BLOCK, 0, frames, MAX), held[i]);
	}
	visits_t v = visit(CPROF_KIND_BLOCK);
	assert_int_equal(v.n, fitted + 1);
	dropped_of(&v, CPROF_KIND_BLOCK);
	free(v.entries);
}

/* The first 256 CPU stacks go to a one-page index, the rest to the big
 * one (preload/stacks.c; other kinds go to the big one only): 3000
 * stacks, each found again as the same entry from whichever index holds
 * it, each visited once, none dropped. */
static void test_stacks_past_the_first_index(void **state)
{
	(void)state;
	enum { N = 3000, DEPTH = 6 };
	new_table(8192, 16);
	static cprof_stack_t *held[N];
	uintptr_t frames[DEPTH];
	for (unsigned i = 0; i < N; i++) {
		make_frames(frames, DEPTH, 50000 + i);
		held[i] = cprof_stacks_insert(CPROF_KIND_CPU, i % 3, frames, DEPTH);
		assert_false(is_dropped(held[i]));
		assert_entry(held[i], CPROF_KIND_CPU, i % 3, frames, DEPTH);
		cprof_stack_add(held[i], 0, 1);
	}
	assert_int_equal(cprof_stacks_used(), N);
	for (unsigned i = 0; i < N; i++) {
		make_frames(frames, DEPTH, 50000 + i);
		assert_ptr_equal(cprof_stacks_insert(CPROF_KIND_CPU, i % 3, frames, DEPTH), held[i]);
	}
	assert_int_equal(cprof_stacks_used(), N);
	visits_t v = visit(CPROF_KIND_CPU);
	assert_int_equal(v.n, N + 1);
	dropped_of(&v, CPROF_KIND_CPU);
	free(v.entries);
}

/* ---- reset ------------------------------------------------------------ */

static void test_reset_empties_everything(void **state)
{
	(void)state;
	enum { CAP = 64, MAX = 8 };
	new_table(CAP, MAX);
	uintptr_t frames[MAX];

	/* Fill it, so the dropped entries carry counts too. */
	for (unsigned i = 0; i < CAP; i++) {
		make_frames(frames, 1 + i % MAX, 3000 + i);
		cprof_stack_t *s = cprof_stacks_insert((cprof_kind_t)(i % CPROF_KIND_COUNT), i,
						       frames, 1 + i % MAX);
		assert_false(is_dropped(s));
		cprof_stack_add(s, 0, 5);
	}
	for (int k = 0; k < CPROF_KIND_COUNT; k++) {
		make_frames(frames, 2, 4000 + k);
		cprof_stack_t *d = cprof_stacks_insert((cprof_kind_t)k, 0, frames, 2);
		assert_true(is_dropped(d));
		cprof_stack_add(d, 0, 9);
	}
	assert_int_equal(cprof_stacks_used(), CAP);

	cprof_stacks_reset();
	assert_int_equal(cprof_stacks_used(), 0);
	for (int k = 0; k < CPROF_KIND_COUNT; k++) {
		visits_t v = visit((cprof_kind_t)k);
		assert_int_equal(v.n, 1); /* the dropped entry only */
		assert_true(is_dropped(v.entries[0]));
		assert_int_equal(v.entries[0]->kind, k);
		for (int i = 0; i < CPROF_VALUES_MAX; i++)
			assert_int_equal(atomic_load(&v.entries[0]->values[i]), 0);
		free(v.entries);
	}

	/* The room is back, and an old stack is new again, at zero. */
	for (unsigned i = 0; i < CAP; i++) {
		make_frames(frames, 1 + i % MAX, 3000 + i);
		cprof_kind_t kind = (cprof_kind_t)(i % CPROF_KIND_COUNT);
		cprof_stack_t *s = cprof_stacks_insert(kind, i, frames, 1 + i % MAX);
		assert_false(is_dropped(s));
		assert_entry(s, kind, i, frames, 1 + i % MAX);
		for (int j = 0; j < CPROF_VALUES_MAX; j++)
			assert_int_equal(atomic_load(&s->values[j]), 0);
	}
	assert_int_equal(cprof_stacks_used(), CAP);

	/* Reset twice in a row is fine. */
	cprof_stacks_reset();
	cprof_stacks_reset();
	assert_int_equal(cprof_stacks_used(), 0);
	visits_t v = visit(CPROF_KIND_CPU);
	assert_int_equal(v.n, 1);
	free(v.entries);
}

/* ---- threads ---------------------------------------------------------- */

enum {
	THREADS = 4,
	ROUNDS = 1000,   /* each round: a fresh set of stacks, raced for */
	PER_ROUND = 48,  /* stacks per round, shared by every thread */
	REPEAT = 3,      /* times each thread records each stack per round */
	RACE_DEPTH = 12,
	FRAME_BASE = 0x10000000,
	ROUND_STRIDE = 0x100000,
	STACK_STRIDE = 0x1000,
	FRAME_STRIDE = 0x10,
};

/* A spinning barrier: the threads that are running leave it within
 * nanoseconds of each other, so their first inserts of a round's new
 * stacks really overlap (a sleeping barrier staggers them by the wake-up
 * latency, longer than a whole round). */
static atomic_uint race_arrived;

static void race_barrier_wait(unsigned round)
{
	atomic_fetch_add(&race_arrived, 1);
	while (atomic_load(&race_arrived) < THREADS * (round + 1))
		sched_yield();
}

typedef struct race_key {
	cprof_kind_t kind;
	uint64_t tag;
	unsigned depth;
	uintptr_t frames[RACE_DEPTH];
} race_key_t;

static void race_stack(unsigned round, unsigned s, race_key_t *k)
{
	k->kind = s % 2 ? CPROF_KIND_HEAP : CPROF_KIND_CPU;
	k->tag = s % 3;
	k->depth = 1 + s % RACE_DEPTH;
	for (unsigned i = 0; i < k->depth; i++)
		k->frames[i] = FRAME_BASE + (uintptr_t)round * ROUND_STRIDE +
			       (uintptr_t)s * STACK_STRIDE + i * FRAME_STRIDE;
}

typedef struct racer {
	pthread_t thread;
	int index;
	unsigned bad; /* NULL or dropped entries, wrong entries: none expected */
} racer_t;

static void *race(void *arg)
{
	racer_t *r = arg;
	race_key_t k;
	for (unsigned round = 0; round < ROUNDS; round++) {
		race_barrier_wait(round);
		for (unsigned rep = 0; rep < REPEAT; rep++) {
			/* Two threads walk the set forwards, two backwards, so
			 * first inserts collide both at the start and midway. */
			for (unsigned j = 0; j < PER_ROUND; j++) {
				unsigned s = r->index % 2 ? PER_ROUND - 1 - j : j;
				race_stack(round, s, &k);
				cprof_stack_t *e = cprof_stacks_insert(k.kind, k.tag, k.frames,
								       k.depth);
				if (!e || is_dropped(e) || e->depth != k.depth ||
				    e->kind != (uint32_t)k.kind || e->tag != k.tag ||
				    memcmp(e->frames, k.frames, k.depth * sizeof *k.frames)) {
					r->bad++;
					continue;
				}
				cprof_stack_add(e, 0, 1);
				cprof_stack_add(e, 1, r->index + 1);
				cprof_stack_add(e, 2, s);
				cprof_stack_add(e, 3, (int64_t)round << 20);
			}
		}
	}
	return NULL;
}

typedef struct race_totals {
	int64_t values[ROUNDS][PER_ROUND][CPROF_VALUES_MAX];
	unsigned entries[ROUNDS][PER_ROUND];
	unsigned corrupt, visited;
} race_totals_t;

/* Decodes an entry back to (round, stack) and checks every field. */
static void race_account(const cprof_stack_t *e, void *ctx)
{
	race_totals_t *t = ctx;
	if (is_dropped(e)) {
		for (int i = 0; i < CPROF_VALUES_MAX; i++)
			t->corrupt += atomic_load(&e->values[i]) != 0;
		return;
	}
	t->visited++;
	uintptr_t off = e->frames[0] - FRAME_BASE;
	unsigned round = (unsigned)(off / ROUND_STRIDE);
	unsigned s = (unsigned)(off % ROUND_STRIDE / STACK_STRIDE);
	if (e->frames[0] < FRAME_BASE || round >= ROUNDS || s >= PER_ROUND ||
	    off % STACK_STRIDE) {
		t->corrupt++;
		return;
	}
	race_key_t k;
	race_stack(round, s, &k);
	if (e->depth != k.depth || e->kind != (uint32_t)k.kind || e->tag != k.tag ||
	    memcmp(e->frames, k.frames, k.depth * sizeof *k.frames)) {
		t->corrupt++;
		return;
	}
	t->entries[round][s]++;
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		t->values[round][s][i] += atomic_load(&e->values[i]);
}

static void test_threads_lose_no_count(void **state)
{
	(void)state;
	new_table(ROUNDS * PER_ROUND * 2, RACE_DEPTH);
	atomic_store(&race_arrived, 0);
	racer_t racers[THREADS];
	for (int i = 0; i < THREADS; i++) {
		racers[i] = (racer_t){ .index = i };
		assert_int_equal(pthread_create(&racers[i].thread, NULL, race, &racers[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(racers[i].thread, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(racers[i].bad, 0);

	race_totals_t *t = calloc(1, sizeof *t);
	assert_non_null(t);
	cprof_stacks_foreach(CPROF_KIND_CPU, race_account, t);
	cprof_stacks_foreach(CPROF_KIND_HEAP, race_account, t);
	assert_int_equal(t->corrupt, 0);
	assert_int_equal(t->visited, cprof_stacks_used());

	unsigned duplicates = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		for (unsigned s = 0; s < PER_ROUND; s++) {
			assert_true(t->entries[round][s] >= 1);
			assert_true(t->entries[round][s] <= THREADS);
			duplicates += t->entries[round][s] - 1;
			const int64_t *v = t->values[round][s];
			assert_int_equal(v[0], THREADS * REPEAT);
			assert_int_equal(v[1], REPEAT * THREADS * (THREADS + 1) / 2);
			assert_int_equal(v[2], (int64_t)THREADS * REPEAT * s);
			assert_int_equal(v[3], (int64_t)THREADS * REPEAT * ((int64_t)round << 20));

			/* Afterwards the stack is found, as one of its entries. */
			race_key_t k;
			race_stack(round, s, &k);
			cprof_stack_t *e = cprof_stacks_insert(k.kind, k.tag, k.frames, k.depth);
			assert_false(is_dropped(e));
			assert_entry(e, k.kind, k.tag, k.frames, k.depth);
		}
	}
	assert_int_equal(t->visited, ROUNDS * PER_ROUND + duplicates);
	assert_int_equal(cprof_stacks_used(), ROUNDS * PER_ROUND + duplicates);
	printf("[  INFO    ] %u threads, %u stacks raced for: %u duplicate entries\n",
	       THREADS, ROUNDS * PER_ROUND, duplicates);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_then_find_same_entry),
		cmocka_unit_test(test_every_key_part_matters),
		cmocka_unit_test(test_counters_add_up),
		cmocka_unit_test(test_foreach_visits_exactly_one_kind),
		cmocka_unit_test(test_depth_cut_to_max_depth),
		cmocka_unit_test(test_full_table_gives_dropped_entry),
		cmocka_unit_test(test_full_depth_stacks_all_fit),
		cmocka_unit_test(test_stacks_past_the_first_index),
		cmocka_unit_test(test_reset_empties_everything),
		cmocka_unit_test(test_threads_lose_no_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
