/* labels.c — profile labels, the counterpart of Go's pprof.Do: a thread
 * sets key/value labels for a region, and every sample recorded on that
 * thread meanwhile (CPU, heap, mutex, block) carries them.
 *
 * A label set is interned once in a fixed table and named by its index
 * (1-based; 0 is "no labels"), which is all a thread holds
 * (cprof_thread.labels) and all a stack entry adds to its key
 * (stacks.c reads it from the recording thread). So a signal handler
 * reads labels with one TLS load, and no lock or allocation is ever
 * involved in using them.
 *
 * Table: CPROF_LABEL_SETS entries of 512 bytes (mmap'd once, pages touched
 * as sets arrive), open addressing on the set's hash. An entry is written
 * while its state is WRITING and published with a release store; a reader
 * that meets a WRITING entry treats it as different and probes on, so
 * nobody waits (at worst one set gets two ids, which pprof merges). When
 * the table is full, or a set has more than LABEL_PAIRS_MAX pairs or
 * LABEL_BYTES of text, the thread's samples carry the one label
 * cprof="labels dropped" instead, so they are still counted.
 *
 * Cost of a push: a set is the previous one with the pairs given added
 * (a key given again replaces its value, as pprof.WithLabels does), kept
 * sorted by key. A per-thread cache of the last LABEL_CACHE pushes
 * (keyed by the previous set and the key pointers) answers a repeated push
 * by comparing the given strings with the interned set's: no hashing of
 * the set, no table probe. Measured in bench (labels section).
 */
#include "cprof_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "cprof.h"

#define LABEL_ENTRY_BYTES 512
#define LABEL_PAIRS_MAX CPROF_LABELS_PAIRS_MAX
#define LABEL_CACHE 8 /* 4 sets of 2 ways */

enum { ENTRY_EMPTY = 0, ENTRY_WRITING = 1, ENTRY_READY = 2 };

typedef struct label_set {
	_Atomic uint32_t state;
	uint16_t pairs;
	uint16_t bytes;     /* of text[] in use */
	uint64_t hash;
	/* pairs x ("key\0value\0"), sorted by key */
	char text[LABEL_ENTRY_BYTES - 16];
} label_set_t;

#define LABEL_BYTES (LABEL_ENTRY_BYTES - 16)

static label_set_t *sets;
static uint32_t set_mask; /* entries - 1, a power of two */
static atomic_uint sets_used;
static atomic_uint dropped_pushes;

/* A push seen before on this thread: the same previous set, the same
 * string pointers, and the same text in them (checked against copies, as
 * a buffer may be reused for another value). Strings longer than the
 * copies are not cached. */
#define CACHE_TEXT_WORDS 4 /* 31 characters and the NUL */

/* A string as the cache keeps it: its bytes and NUL in 8-byte words,
 * zero-padded, and for each word the mask of its bytes that count (all
 * of them up to the NUL's word, the NUL's and those before it there). */
typedef struct cached_text {
	uint64_t word[CACHE_TEXT_WORDS];
	uint64_t mask[CACHE_TEXT_WORDS];
	unsigned words;
} cached_text_t;

typedef struct cache_entry {
	uint32_t previous, result; /* result 0: empty */
	unsigned pairs;
	bool recent;               /* way 0 only: it was filled last */
	const char *ptr[4];        /* key, value, key, value */
	cached_text_t text[4];
} cache_entry_t;

static __thread cache_entry_t push_cache[LABEL_CACHE] __attribute__((tls_model("initial-exec")));

int cprof_labels_init(unsigned entries)
{
	uint32_t n = 1;
	while (n < entries)
		n <<= 1;
	void *mem = mmap(NULL, (size_t)n * sizeof(label_set_t), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	sets = mem;
	set_mask = n - 1;
	return 0;
}

static const label_set_t *set_at(uint32_t id)
{
	if (!sets || id == 0 || id == CPROF_LABELS_DROPPED || id - 1 > set_mask)
		return NULL;
	const label_set_t *s = &sets[id - 1];
	return atomic_load_explicit(&s->state, memory_order_acquire) == ENTRY_READY ? s : NULL;
}

unsigned cprof_labels_get(uint32_t id, const char **keys, const char **values, unsigned max)
{
	const label_set_t *s = set_at(id);
	if (!s)
		return 0;
	const char *p = s->text;
	unsigned n = 0;
	for (unsigned i = 0; i < s->pairs && n < max; i++, n++) {
		keys[n] = p;
		p += strlen(p) + 1;
		values[n] = p;
		p += strlen(p) + 1;
	}
	return n;
}

/* ---- building a set ---------------------------------------------------- */

typedef struct pair {
	const char *key, *value;
} pair_t;

static uint64_t hash_text(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return cprof_mix64(h ^ n);
}

/* The previous set's pairs plus the given ones, sorted by key, a given key
 * replacing the previous value (and the last of a key given twice
 * winning). Returns the count, or -1 when there are too many. */
static int merge_pairs(uint32_t previous, const char *const *kv, unsigned given,
		       pair_t out[LABEL_PAIRS_MAX])
{
	const char *keys[LABEL_PAIRS_MAX], *values[LABEL_PAIRS_MAX];
	unsigned n = cprof_labels_get(previous, keys, values, LABEL_PAIRS_MAX);
	for (unsigned i = 0; i < n; i++)
		out[i] = (pair_t){ keys[i], values[i] };
	for (unsigned g = 0; g < given; g++) {
		const char *key = kv[2 * g], *value = kv[2 * g + 1] ? kv[2 * g + 1] : "";
		unsigned i = 0;
		while (i < n && strcmp(out[i].key, key) < 0)
			i++;
		if (i < n && strcmp(out[i].key, key) == 0) {
			out[i].value = value;
			continue;
		}
		if (n == LABEL_PAIRS_MAX)
			return -1;
		memmove(&out[i + 1], &out[i], (n - i) * sizeof *out);
		out[i] = (pair_t){ key, value };
		n++;
	}
	return (int)n;
}

/* Interns the set; its id, or CPROF_LABELS_DROPPED. */
static uint32_t intern_set(const pair_t *pairs, unsigned n)
{
	char text[LABEL_BYTES];
	size_t len = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t k = strlen(pairs[i].key) + 1, v = strlen(pairs[i].value) + 1;
		if (len + k + v > sizeof text)
			return CPROF_LABELS_DROPPED;
		memcpy(text + len, pairs[i].key, k);
		memcpy(text + len + k, pairs[i].value, v);
		len += k + v;
	}
	uint64_t hash = hash_text(text, len);
	for (uint32_t probe = 0, i = (uint32_t)hash & set_mask; probe <= set_mask;
	     probe++, i = (i + 1) & set_mask) {
		label_set_t *s = &sets[i];
		uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
		if (state == ENTRY_EMPTY) {
			/* At most three quarters full: probes stay short. */
			if (atomic_load_explicit(&sets_used, memory_order_relaxed) >=
			    (set_mask + 1) / 4 * 3)
				break;
			uint32_t expected = ENTRY_EMPTY;
			if (!atomic_compare_exchange_strong_explicit(&s->state, &expected,
								     ENTRY_WRITING,
								     memory_order_acquire,
								     memory_order_acquire)) {
				state = expected;
			} else {
				atomic_fetch_add_explicit(&sets_used, 1, memory_order_relaxed);
				s->pairs = (uint16_t)n;
				s->bytes = (uint16_t)len;
				s->hash = hash;
				memcpy(s->text, text, len);
				atomic_store_explicit(&s->state, ENTRY_READY, memory_order_release);
				return i + 1;
			}
		}
		if (state == ENTRY_READY && s->hash == hash && s->bytes == len &&
		    memcmp(s->text, text, len) == 0)
			return i + 1;
	}
	return CPROF_LABELS_DROPPED;
}

static unsigned cache_index(uint32_t previous, const char *const *kv, unsigned pairs)
{
	uint64_t h = previous ^ (uintptr_t)kv[0] * 0x9e3779b97f4a7c15ULL;
	if (pairs > 1)
		h ^= (uintptr_t)kv[2] * 0xbf58476d1ce4e5b9ULL;
	h ^= (uintptr_t)kv[1] * 0x94d049bb133111ebULL;
	return (unsigned)(cprof_mix64(h) & (LABEL_CACHE / 2 - 1)) * 2;
}

/* Whether s is the cached text. Reads s 8 bytes at a time: past its end
 * only within its own page, which cannot fault (as glibc's strlen reads);
 * the bytes past the NUL are masked off. */
__attribute__((no_sanitize_address)) static inline bool same_text(const char *s,
								   const cached_text_t *c)
{
	unsigned words = c->words;
	/* Within the last 32 bytes of a page (1 string in 128): a byte at a
	 * time, so that no read crosses into the next page. */
	if (CPROF_UNLIKELY(((uintptr_t)s & 4095) > 4096 - sizeof c->word)) {
		const char *copy = (const char *)c->word;
		for (unsigned i = 0; i < 8u * words; i++) {
			if (s[i] != copy[i])
				return false;
			if (!s[i])
				return true;
		}
		return false;
	}
	/* The differences of every word at once: one test, not one a word. */
	uint64_t a, diff;
	memcpy(&a, s, 8);
	diff = (a ^ c->word[0]) & c->mask[0];
	for (unsigned i = 1; i < words; i++) {
		memcpy(&a, s + 8 * i, 8);
		diff |= (a ^ c->word[i]) & c->mask[i];
	}
	return diff == 0;
}

/* Keeps s in c if it fits; false if not. */
static bool copy_text(cached_text_t *c, const char *s)
{
	size_t n = strlen(s) + 1; /* with the NUL */
	if (n > sizeof c->word)
		return false;
	memset(c->word, 0, sizeof c->word);
	memcpy(c->word, s, n);
	c->words = (unsigned)((n + 7) / 8);
	size_t tail = n - 8 * (c->words - 1u);
	for (unsigned i = 0; i < CACHE_TEXT_WORDS; i++)
		c->mask[i] = i + 1 < c->words ? ~0ULL : 0;
	c->mask[c->words - 1] = tail >= 8 ? ~0ULL : (1ULL << (8 * tail)) - 1;
	return true;
}

/* The pointers are compared first (a miss costs a few loads), then the
 * text, which is what makes a hit right. */
static inline bool cache_matches(const cache_entry_t *c, uint32_t previous,
				 const char *const *kv, unsigned pairs)
{
	if (c->result == 0 || c->previous != previous || c->pairs != pairs)
		return false;
	unsigned n = 2 * pairs;
	uintptr_t moved = 0;
	for (unsigned i = 0; i < n; i++)
		moved |= (uintptr_t)c->ptr[i] ^ (uintptr_t)kv[i];
	if (moved)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (!same_text(kv[i], &c->text[i]))
			return false;
	return true;
}

static void cache_store(cache_entry_t *c, uint32_t previous, const char *const *kv,
			unsigned pairs, uint32_t result)
{
	c->result = 0;
	for (unsigned i = 0; i < 2 * pairs; i++) {
		if (!kv[i] || !copy_text(&c->text[i], kv[i]))
			return;
		c->ptr[i] = kv[i];
	}
	c->previous = previous;
	c->pairs = pairs;
	c->result = result;
}

/* ---- the API (include/cprof.h) ----------------------------------------- */

static uint32_t push_uncached(uint32_t previous, const char *const *kv, unsigned pairs)
{
	pair_t merged[LABEL_PAIRS_MAX];
	int n = previous == CPROF_LABELS_DROPPED ? -1 : merge_pairs(previous, kv, pairs, merged);
	uint32_t result = n < 0 ? CPROF_LABELS_DROPPED : intern_set(merged, (unsigned)n);
	if (result == CPROF_LABELS_DROPPED && atomic_fetch_add(&dropped_pushes, 1) == 0)
		cprof_log("label table full (CPROF_LABEL_SETS=%u) or a label set over %d pairs "
			  "or %d bytes; such samples carry cprof=\"labels dropped\"",
			  set_mask + 1, LABEL_PAIRS_MAX, LABEL_BYTES);
	return result;
}

CPROF_EXPORT unsigned long cprof_labels_push_array(const char *const *kv, unsigned pairs)
{
	uint32_t previous = cprof_thread.labels;
	if (CPROF_UNLIKELY(!sets || !kv || pairs == 0))
		return previous;
	/* A hit: pointers and text as cached (so no NULL among them). */
	cache_entry_t *c = NULL;
	if (pairs <= 2 && previous != CPROF_LABELS_DROPPED) {
		cache_entry_t *way = &push_cache[cache_index(previous, kv, pairs)];
		for (int w = 0; w < 2; w++) {
			if (CPROF_LIKELY(cache_matches(&way[w], previous, kv, pairs))) {
				cprof_thread.labels = way[w].result;
				return previous;
			}
		}
		/* A miss replaces the way used less recently. */
		c = &way[way[0].recent ? 1 : 0];
		way[0].recent = c == &way[0];
	}
	for (unsigned g = 0; g < pairs; g++)
		if (!kv[2 * g])
			return previous; /* a NULL key: nothing more to read */
	uint32_t result = push_uncached(previous, kv, pairs);
	if (c && result != CPROF_LABELS_DROPPED)
		cache_store(c, previous, kv, pairs, result);
	cprof_thread.labels = result;
	return previous;
}

CPROF_EXPORT void cprof_labels_restore(unsigned long previous)
{
	if (previous == CPROF_LABELS_DROPPED || (sets && previous <= (unsigned long)set_mask + 1))
		cprof_thread.labels = (uint32_t)previous;
}

CPROF_EXPORT unsigned long cprof_labels_current(void)
{
	return cprof_thread.labels;
}

/* A fork child keeps its labels and the table (a copy of the parent's),
 * but not the parent thread's cache of pushes: it is this thread's own,
 * and still right. Nothing to do. */
