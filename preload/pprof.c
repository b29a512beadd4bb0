/* pprof.c — turns the stack table into a gzipped profile.proto, the one
 * writer every profile kind goes through.
 *
 * Dump path only: it allocates freely (with the re-entrancy guard held by
 * the caller). Each kind is described by a table row: its sample types,
 * period type and period, default sample type and how raw counters become
 * sample values. Every unique address becomes one Location, symbolized
 * once; functions and strings are de-duplicated. Mappings carry has_*
 * flags only where every location in them was resolved, so pprof can still
 * symbolize the rest itself from the binaries.
 */
#include "cprof_internal.h"
#include "wait.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile profile_t;
typedef Perftools__Profiles__Sample sample_t;
typedef Perftools__Profiles__Location location_t;
typedef Perftools__Profiles__Line line_t;
typedef Perftools__Profiles__Function function_t;
typedef Perftools__Profiles__Mapping mapping_t;
typedef Perftools__Profiles__ValueType value_type_t;
typedef Perftools__Profiles__Label label_t;

/* ---- what each kind writes: its row of the registry (sources.c) ---- */

typedef cprof_source_t kind_format_t;
#define formats cprof_sources

/* The period each kind reports; sources for later kinds set theirs. */
int64_t cprof_pprof_period[CPROF_KIND_COUNT];

/* Raw counters to sample values; identity unless a source says otherwise
 * (the heap profile unbiases its samples here). */
cprof_values_fn cprof_pprof_values[CPROF_KIND_COUNT];

void cprof_source_register(cprof_kind_t kind, int64_t period, cprof_values_fn values)
{
	cprof_pprof_period[kind] = period;
	cprof_pprof_values[kind] = values;
	atomic_fetch_or(&cprof_dump_kinds, 1u << kind);
}

/* ---- small hash maps (dump path) ------------------------------------ */

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t hash_str(const char *s, uint64_t h)
{
	return hash_bytes(s, strlen(s) + 1, h);
}

/* Open addressing: keys hashed by the caller, values are 1-based ids. */
typedef struct id_map {
	uint64_t *hashes;
	uint32_t *ids;
	size_t mask;
	size_t count;
} id_map_t;

static int id_map_init(id_map_t *m, size_t expected)
{
	size_t n = 64;
	while (n < expected * 2)
		n <<= 1;
	m->hashes = calloc(n, sizeof *m->hashes);
	m->ids = calloc(n, sizeof *m->ids);
	m->mask = n - 1;
	m->count = 0;
	return m->hashes && m->ids ? 0 : -ENOMEM;
}

static void id_map_free(id_map_t *m)
{
	free(m->hashes);
	free(m->ids);
}

static int id_map_grow(id_map_t *m)
{
	id_map_t bigger;
	if (id_map_init(&bigger, (m->mask + 1)) < 0) {
		id_map_free(&bigger);
		return -ENOMEM;
	}
	for (size_t i = 0; i <= m->mask; i++) {
		if (!m->ids[i])
			continue;
		size_t j = m->hashes[i] & bigger.mask;
		while (bigger.ids[j])
			j = (j + 1) & bigger.mask;
		bigger.hashes[j] = m->hashes[i];
		bigger.ids[j] = m->ids[i];
	}
	bigger.count = m->count;
	id_map_free(m);
	*m = bigger;
	return 0;
}

/* Finds the slot for `hash` whose entry `same(id, ctx)` accepts, or the
 * empty slot where it belongs. */
static size_t id_map_find(const id_map_t *m, uint64_t hash, bool (*same)(uint32_t, void *),
			  void *ctx)
{
	size_t i = hash & m->mask;
	while (m->ids[i] && !(m->hashes[i] == hash && same(m->ids[i], ctx)))
		i = (i + 1) & m->mask;
	return i;
}

/* ---- the profile being built ---------------------------------------- */

typedef struct builder {
	cprof_kind_t kind;
	cprof_symbolizer_t *sym;
	const kind_format_t *format;

	char **strings;
	size_t nstrings, cap_strings;
	id_map_t string_ids;

	function_t **functions;
	size_t nfunctions, cap_functions;
	id_map_t function_ids;

	location_t **locations;
	size_t nlocations, cap_locations;
	int *location_mapping;  /* symbolizer mapping index per location */
	id_map_t location_ids;

	sample_t **samples;
	size_t nsamples, cap_samples;

	const cprof_snapshot_t *base, *later; /* a delta: later (or now) - base */
	unsigned keep_later;
	bool addresses_only;

	int err;
} builder_t;

static int grow(void **array, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < need)
		n *= 2;
	void *p = realloc(*array, n * elem);
	if (!p)
		return -ENOMEM;
	*array = p;
	*cap = n;
	return 0;
}

typedef struct string_key {
	builder_t *b;
	const char *s;
} string_key_t;

static bool same_string(uint32_t id, void *ctx)
{
	string_key_t *k = ctx;
	return strcmp(k->b->strings[id - 1], k->s) == 0;
}

/* Index of s in the string table, adding it if new. */
static int64_t intern(builder_t *b, const char *s)
{
	if (!s || !*s)
		return 0;
	if (b->err)
		return 0;
	if (b->string_ids.count * 2 >= b->string_ids.mask && id_map_grow(&b->string_ids) < 0)
		goto oom;
	string_key_t key = { b, s };
	uint64_t h = hash_str(s, 0xcbf29ce484222325ULL);
	size_t slot = id_map_find(&b->string_ids, h, same_string, &key);
	if (b->string_ids.ids[slot])
		return b->string_ids.ids[slot] - 1;
	if (grow((void **)&b->strings, &b->cap_strings, b->nstrings + 1, sizeof(char *)) < 0)
		goto oom;
	char *copy = strdup(s);
	if (!copy)
		goto oom;
	b->strings[b->nstrings++] = copy;
	b->string_ids.hashes[slot] = h;
	b->string_ids.ids[slot] = (uint32_t)b->nstrings; /* index + 1 */
	b->string_ids.count++;
	return (int64_t)b->nstrings - 1;
oom:
	b->err = -ENOMEM;
	return 0;
}

typedef struct function_key {
	builder_t *b;
	int64_t name, system_name, filename, start_line;
} function_key_t;

static bool same_function(uint32_t id, void *ctx)
{
	function_key_t *k = ctx;
	const function_t *f = k->b->functions[id - 1];
	return f->name == k->name && f->system_name == k->system_name &&
	       f->filename == k->filename && f->start_line == k->start_line;
}

static uint64_t function_id(builder_t *b, const cprof_line_t *line)
{
	function_key_t key = { b, intern(b, line->name), intern(b, line->system_name),
			       intern(b, line->file), line->start_line };
	if (b->err)
		return 0;
	if (b->function_ids.count * 2 >= b->function_ids.mask &&
	    id_map_grow(&b->function_ids) < 0)
		goto oom;
	uint64_t h = 0xcbf29ce484222325ULL;
	h = hash_bytes(&key.name, sizeof key.name, h);
	h = hash_bytes(&key.system_name, sizeof key.system_name, h);
	h = hash_bytes(&key.filename, sizeof key.filename, h);
	h = hash_bytes(&key.start_line, sizeof key.start_line, h);
	size_t slot = id_map_find(&b->function_ids, h, same_function, &key);
	if (b->function_ids.ids[slot])
		return b->function_ids.ids[slot];
	if (grow((void **)&b->functions, &b->cap_functions, b->nfunctions + 1,
		 sizeof(function_t *)) < 0)
		goto oom;
	function_t *f = malloc(sizeof *f);
	if (!f)
		goto oom;
	perftools__profiles__function__init(f);
	f->id = b->nfunctions + 1;
	f->name = key.name;
	f->system_name = key.system_name;
	f->filename = key.filename;
	f->start_line = key.start_line;
	b->functions[b->nfunctions++] = f;
	b->function_ids.hashes[slot] = h;
	b->function_ids.ids[slot] = (uint32_t)f->id;
	b->function_ids.count++;
	return f->id;
oom:
	b->err = -ENOMEM;
	return 0;
}

typedef struct location_key {
	builder_t *b;
	uintptr_t address;
} location_key_t;

static bool same_location(uint32_t id, void *ctx)
{
	location_key_t *k = ctx;
	return k->b->locations[id - 1]->address == k->address;
}

static uint64_t location_id(builder_t *b, uintptr_t address)
{
	if (b->err)
		return 0;
	if (b->location_ids.count * 2 >= b->location_ids.mask &&
	    id_map_grow(&b->location_ids) < 0)
		goto oom;
	location_key_t key = { b, address };
	uint64_t h = hash_bytes(&address, sizeof address, 0xcbf29ce484222325ULL);
	size_t slot = id_map_find(&b->location_ids, h, same_location, &key);
	if (b->location_ids.ids[slot])
		return b->location_ids.ids[slot];

	cprof_symbol_t symbol = { .mapping = -1 };
	if (b->addresses_only && address >= CPROF_FRAME_PSEUDO_MAX) /* pseudo-frames keep names */
		symbol.mapping = cprof_symbolizer_mapping_of(b->sym, address);
	else
		cprof_symbolize(b->sym, address, &symbol);
	if (grow((void **)&b->locations, &b->cap_locations, b->nlocations + 1,
		 sizeof(location_t *)) < 0)
		goto oom;
	size_t cap = b->cap_locations;
	int *mapping = realloc(b->location_mapping, cap * sizeof(int));
	if (!mapping)
		goto oom;
	b->location_mapping = mapping;

	location_t *loc = calloc(1, sizeof *loc);
	if (!loc)
		goto oom;
	perftools__profiles__location__init(loc);
	loc->id = b->nlocations + 1;
	loc->address = address;
	if (symbol.nlines) {
		loc->line = calloc(symbol.nlines, sizeof(line_t *));
		line_t *lines = calloc(symbol.nlines, sizeof(line_t));
		if (!loc->line || !lines) {
			free(loc->line);
			free(lines);
			free(loc);
			goto oom;
		}
		for (unsigned i = 0; i < symbol.nlines; i++) {
			perftools__profiles__line__init(&lines[i]);
			lines[i].function_id = function_id(b, &symbol.lines[i]);
			lines[i].line = symbol.lines[i].line;
			loc->line[i] = &lines[i];
		}
		loc->n_line = symbol.nlines;
	}
	b->location_mapping[b->nlocations] = symbol.mapping;
	b->locations[b->nlocations++] = loc;
	b->location_ids.hashes[slot] = h;
	b->location_ids.ids[slot] = (uint32_t)loc->id;
	b->location_ids.count++;
	return loc->id;
oom:
	b->err = -ENOMEM;
	return 0;
}

/* The sample values of an entry as they stand now. */
static void entry_values(cprof_kind_t kind, const cprof_stack_t *s,
			 int64_t values[CPROF_VALUES_MAX])
{
	if (cprof_pprof_values[kind]) {
		cprof_pprof_values[kind](s, values);
		return;
	}
	for (unsigned i = 0; i < formats[kind].nvalues; i++)
		values[i] = atomic_load_explicit(&s->values[i], memory_order_relaxed);
}

/* ---- snapshots, for delta profiles ---------------------------------- */

/* Entries never move and are never freed (until a fork child empties the
 * table, which no snapshot outlives: they live on threads the child does
 * not have), so an entry's address is its key. */
struct cprof_snapshot {
	cprof_kind_t kind;
	int64_t wall_ns;
	size_t mask, count;
	const cprof_stack_t **keys;
	int64_t (*values)[CPROF_VALUES_MAX];
	int err;
};

static size_t snapshot_slot(const cprof_snapshot_t *snap, const cprof_stack_t *s)
{
	size_t i = cprof_mix64((uintptr_t)s) & snap->mask;
	while (snap->keys[i] && snap->keys[i] != s)
		i = (i + 1) & snap->mask;
	return i;
}

static void count_entry(const cprof_stack_t *s, void *ctx)
{
	(void)s;
	(*(size_t *)ctx)++;
}

static void snapshot_add(const cprof_stack_t *s, void *ctx)
{
	cprof_snapshot_t *snap = ctx;
	int64_t values[CPROF_VALUES_MAX] = { 0 };
	if (snap->count * 2 >= snap->mask) { /* entries arrived since the count */
		snap->err = -ENOSPC;
		return;
	}
	entry_values(snap->kind, s, values);
	size_t i = snapshot_slot(snap, s);
	snap->keys[i] = s;
	memcpy(snap->values[i], values, sizeof values);
	snap->count++;
}

cprof_snapshot_t *cprof_snapshot_take(cprof_kind_t kind, int64_t now_wall_ns)
{
	size_t entries = 0;
	cprof_source_foreach(kind, count_entry, &entries);
	size_t n = 64;
	while (n < (entries + entries / 2 + 64) * 2)
		n <<= 1;
	cprof_snapshot_t *snap = calloc(1, sizeof *snap);
	if (!snap)
		return NULL;
	snap->kind = kind;
	snap->wall_ns = now_wall_ns;
	snap->mask = n - 1;
	snap->keys = calloc(n, sizeof *snap->keys);
	snap->values = calloc(n, sizeof *snap->values);
	if (snap->keys && snap->values)
		cprof_source_foreach(kind, snapshot_add, snap);
	if (!snap->keys || !snap->values || snap->err) {
		cprof_snapshot_free(snap);
		return NULL;
	}
	return snap;
}

void cprof_snapshot_free(cprof_snapshot_t *snap)
{
	if (!snap)
		return;
	free(snap->keys);
	free(snap->values);
	free(snap);
}

/* The values of s in snap; false when s was not there yet. */
static bool snapshot_values(const cprof_snapshot_t *snap, const cprof_stack_t *s,
			    int64_t values[CPROF_VALUES_MAX])
{
	size_t i = snapshot_slot(snap, s);
	if (!snap->keys[i])
		return false;
	memcpy(values, snap->values[i], sizeof snap->values[i]);
	return true;
}

static void count_nonzero(const cprof_stack_t *s, void *ctx)
{
	int64_t values[CPROF_VALUES_MAX] = { 0 };
	entry_values(s->kind, s, values);
	for (unsigned i = 0; i < formats[s->kind].nvalues; i++)
		if (values[i]) {
			(*(size_t *)ctx)++;
			return;
		}
}

size_t cprof_pprof_count(cprof_kind_t kind)
{
	size_t n = 0;
	if (formats[kind].collect)
		formats[kind].collect();
	cprof_source_foreach(kind, count_nonzero, &n);
	return n;
}

/* ---- debug=1: the legacy text forms Go writes ------------------------- */

typedef struct text_ctx {
	FILE *f;
	cprof_kind_t kind;
	cprof_symbolizer_t *sym;
	int64_t totals[CPROF_VALUES_MAX];
	bool header_pass;
} text_ctx_t;

static void text_entry(const cprof_stack_t *s, void *p)
{
	text_ctx_t *t = p;
	int64_t v[CPROF_VALUES_MAX] = { 0 };
	entry_values(t->kind, s, v);
	bool any = false;
	for (unsigned i = 0; i < formats[t->kind].nvalues; i++)
		any |= v[i] != 0;
	if (!any)
		return;
	if (t->header_pass) {
		for (unsigned i = 0; i < CPROF_VALUES_MAX; i++)
			t->totals[i] += v[i];
		return;
	}
	if (t->kind == CPROF_KIND_HEAP)
		fprintf(t->f, "%lld: %lld [%lld: %lld] @", (long long)v[2], (long long)v[3],
			(long long)v[0], (long long)v[1]);
	else
		fprintf(t->f, "%lld %lld @", (long long)v[1], (long long)v[0]);
	/* Callers are stored as return address - 1; the text form carries
	 * return addresses, as Go's, and its readers take the 1 off. */
	for (unsigned i = 0; i < s->depth; i++)
		fprintf(t->f, " %#lx", (unsigned long)(s->frames[i] + (i > 0)));
	fputc('\n', t->f);
	for (unsigned i = 0; i < s->depth; i++) {
		cprof_symbol_t sym;
		cprof_symbolize(t->sym, s->frames[i], &sym);
		for (unsigned j = 0; j < sym.nlines; j++) {
			const cprof_line_t *l = &sym.lines[j];
			fprintf(t->f, "#\t%#lx\t%s", (unsigned long)(s->frames[i] + (i > 0)), l->name);
			if (l->file && *l->file)
				fprintf(t->f, "\t%s:%lld", l->file, (long long)l->line);
			fputc('\n', t->f);
		}
	}
	fputc('\n', t->f);
}

static void want_entry(const cprof_stack_t *s, void *ctx)
{
	for (unsigned i = 0; i < s->depth; i++)
		cprof_symbolizer_want(ctx, s->frames[i]);
}

void cprof_pprof_want(cprof_kind_t kind, cprof_symbolizer_t *sym)
{
	cprof_source_foreach(kind, want_entry, sym);
}

int cprof_pprof_text(cprof_kind_t kind, cprof_symbolizer_t *sym, int debug, char **out,
		     size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (kind == CPROF_KIND_CPU)
		return -EINVAL; /* Go has no text form of it either */
	FILE *f = open_memstream(out, out_len);
	if (!f)
		return -ENOMEM;
	if (formats[kind].text) {
		if (formats[kind].collect)
			formats[kind].collect();
		int err = formats[kind].text(sym, debug, f);
		if (fclose(f) != 0 && !err)
			err = -ENOMEM;
		if (err) {
			free(*out);
			*out = NULL;
		}
		return err;
	}
	text_ctx_t t = { .f = f, .kind = kind, .sym = sym, .header_pass = true };
	cprof_pprof_want(kind, sym);
	cprof_source_foreach(kind, text_entry, &t);
	if (kind == CPROF_KIND_HEAP) {
		/* Values are already unbiased estimates: heap/2 is Go's way of
		 * saying a rate of 1, so that readers scale nothing again. */
		fprintf(f, "heap profile: %lld: %lld [%lld: %lld] @ heap/2\n\n",
			(long long)t.totals[2], (long long)t.totals[3], (long long)t.totals[0],
			(long long)t.totals[1]);
	} else {
		/* Delays in nanoseconds (one cycle a nanosecond), contentions
		 * already scaled up by the sampling. */
		fprintf(f, "--- %s:\ncycles/second=1000000000\nsampling period=1\n",
			kind == CPROF_KIND_MUTEX ? "mutex" : "contention");
	}
	t.header_pass = false;
	cprof_source_foreach(kind, text_entry, &t);
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void add_sample(const cprof_stack_t *s, void *ctx)
{
	builder_t *b = ctx;
	int64_t values[CPROF_VALUES_MAX] = { 0 };
	unsigned n = b->format->nvalues;
	bool any = false;

	if (b->err)
		return;
	if (b->later) {
		if (!snapshot_values(b->later, s, values))
			return; /* arrived after the later snapshot */
	} else {
		entry_values(b->kind, s, values);
	}
	int64_t base[CPROF_VALUES_MAX];
	if (b->base && snapshot_values(b->base, s, base))
		for (unsigned i = 0; i < n; i++)
			if (!(b->keep_later & (1u << i)))
				values[i] -= base[i];
	for (unsigned i = 0; i < n; i++)
		any |= values[i] != 0;
	if (!any)
		return;

	if (grow((void **)&b->samples, &b->cap_samples, b->nsamples + 1, sizeof(sample_t *)) < 0)
		goto oom;
	sample_t *sample = calloc(1, sizeof *sample);
	if (!sample)
		goto oom;
	b->samples[b->nsamples++] = sample;
	perftools__profiles__sample__init(sample);
	sample->location_id = calloc(s->depth ? s->depth : 1, sizeof(uint64_t));
	sample->value = calloc(n, sizeof(int64_t));
	if (!sample->location_id || !sample->value)
		goto oom;
	for (unsigned i = 0; i < s->depth; i++)
		sample->location_id[sample->n_location_id++] = location_id(b, s->frames[i]);
	memcpy(sample->value, values, n * sizeof(int64_t));
	sample->n_value = n;
	/* Labels: the kind's numeric tag (heap: bytes), then the recording
	 * thread's label set, or the one label saying it was dropped. */
	const char *keys[CPROF_LABELS_PAIRS_MAX], *strs[CPROF_LABELS_PAIRS_MAX];
	unsigned npairs = 0;
	if (s->labels == CPROF_LABELS_DROPPED) {
		keys[0] = "cprof";
		strs[0] = "labels dropped";
		npairs = 1;
	} else if (s->labels) {
		npairs = cprof_labels_get(s->labels, keys, strs, CPROF_LABELS_PAIRS_MAX);
	}
	cprof_sample_label_t extra[8];
	unsigned nextra = b->format->labels ? b->format->labels(s, extra, 8) : 0;
	unsigned nlabels = (b->format->tag_label[0] ? 1 : 0) + nextra + npairs;
	if (nlabels) {
		label_t *labels = calloc(nlabels, sizeof *labels);
		sample->label = calloc(nlabels, sizeof(label_t *));
		if (!labels || !sample->label) {
			free(labels);
			goto oom;
		}
		for (unsigned i = 0; i < nlabels; i++) {
			perftools__profiles__label__init(&labels[i]);
			sample->label[i] = &labels[i];
		}
		unsigned at = 0;
		if (b->format->tag_label[0]) {
			labels[at].key = intern(b, b->format->tag_label[0]);
			labels[at].num = (int64_t)s->tag;
			labels[at].num_unit = intern(b, b->format->tag_label[1]);
			at++;
		}
		for (unsigned i = 0; i < nextra; i++, at++) {
			labels[at].key = intern(b, extra[i].key);
			if (extra[i].str) {
				labels[at].str = intern(b, extra[i].str);
			} else {
				labels[at].num = extra[i].num;
				labels[at].num_unit = intern(b, extra[i].unit);
			}
		}
		for (unsigned i = 0; i < npairs; i++, at++) {
			labels[at].key = intern(b, keys[i]);
			labels[at].str = intern(b, strs[i]);
		}
		sample->n_label = nlabels;
	}
	return;
oom:
	b->err = -ENOMEM;
}

static void builder_free(builder_t *b)
{
	for (size_t i = 0; i < b->nsamples; i++) {
		sample_t *s = b->samples[i];
		free(s->location_id);
		free(s->value);
		if (s->label)
			free(s->label[0]);
		free(s->label);
		free(s);
	}
	free(b->samples);
	for (size_t i = 0; i < b->nlocations; i++) {
		if (b->locations[i]->line)
			free(b->locations[i]->line[0]);
		free(b->locations[i]->line);
		free(b->locations[i]);
	}
	free(b->locations);
	free(b->location_mapping);
	for (size_t i = 0; i < b->nfunctions; i++)
		free(b->functions[i]);
	free(b->functions);
	for (size_t i = 0; i < b->nstrings; i++)
		free(b->strings[i]);
	free(b->strings);
	id_map_free(&b->string_ids);
	id_map_free(&b->function_ids);
	id_map_free(&b->location_ids);
}

/* gzip (RFC 1952) of in[0..len). */
#define GZIP_STORE_BELOW 8192

static int gzip_buffer(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	/* A short process's profile is a few KiB: a window and hash sized to
	 * it spare allocating (and faulting in) zlib's 256 KiB default. And
	 * below GZIP_STORE_BELOW it is stored, not compressed: compressing
	 * costs a fixed 300 k instructions or so (about 380 k for a 2.4 KiB
	 * profile, 160 a byte, against 5 k to store it): for a CPU and a block
	 * profile, a quarter of the instructions a short process's exit dump
	 * added, to save about 1 KiB a file. Still one gzip member, read by
	 * every reader alike. */
	int window_bits = len < 4096 ? 12 : 15;
	int mem_level = len < 4096 ? 4 : 8;
	int level = len < GZIP_STORE_BELOW ? Z_NO_COMPRESSION : Z_BEST_SPEED;
	if (deflateInit2(&z, level, Z_DEFLATED, window_bits + 16, mem_level, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -ENOMEM;
	size_t cap = deflateBound(&z, len) + 32;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	*out_len = z.total_out;
	return 0;
}

int cprof_pprof_build(cprof_kind_t kind, cprof_symbolizer_t *sym, int64_t now_wall_ns,
		      uint8_t **out, size_t *out_len)
{
	return cprof_pprof_build_with(kind, sym, now_wall_ns, NULL, out, out_len);
}

int cprof_pprof_build_with(cprof_kind_t kind, cprof_symbolizer_t *sym, int64_t now_wall_ns,
			   const cprof_pprof_options_t *opt, uint8_t **out, size_t *out_len)
{
	static const cprof_pprof_options_t no_options;
	builder_t b;
	memset(&b, 0, sizeof b);
	if (!opt)
		opt = &no_options;
	b.kind = kind;
	b.sym = sym;
	b.format = &formats[kind];
	b.base = opt->base;
	b.later = opt->later;
	b.keep_later = opt->keep_later;
	b.addresses_only = opt->addresses_only;
	if (opt->later)
		now_wall_ns = opt->later->wall_ns;
	*out = NULL;
	*out_len = 0;
	if (b.format->collect && !opt->base && !opt->later) {
		int err = b.format->collect();
		if (err < 0)
			return err;
	}

	if (id_map_init(&b.string_ids, 256) < 0 || id_map_init(&b.function_ids, 256) < 0 ||
	    id_map_init(&b.location_ids, 1024) < 0) {
		builder_free(&b);
		return -ENOMEM;
	}
	/* string_table[0] must be "". */
	if (grow((void **)&b.strings, &b.cap_strings, 1, sizeof(char *)) < 0 ||
	    !(b.strings[0] = strdup(""))) {
		builder_free(&b);
		return -ENOMEM;
	}
	b.nstrings = 1;

	profile_t p;
	perftools__profiles__profile__init(&p);
	value_type_t types[CPROF_VALUES_MAX], period_type;
	value_type_t *type_ptrs[CPROF_VALUES_MAX];
	for (unsigned i = 0; i < b.format->nvalues; i++) {
		perftools__profiles__value_type__init(&types[i]);
		types[i].type = intern(&b, b.format->types[i][0]);
		types[i].unit = intern(&b, b.format->types[i][1]);
		type_ptrs[i] = &types[i];
	}
	perftools__profiles__value_type__init(&period_type);
	period_type.type = intern(&b, b.format->period_type[0]);
	period_type.unit = intern(&b, b.format->period_type[1]);

	if (!b.addresses_only)
		cprof_pprof_want(kind, sym);
	cprof_source_foreach(kind, add_sample, &b);

	/* Mappings, with their flags as the lookups left them. */
	const cprof_mapping_t *maps = NULL;
	unsigned nmaps = cprof_symbolizer_mappings(sym, &maps);
	mapping_t *mappings = calloc(nmaps ? nmaps : 1, sizeof *mappings);
	mapping_t **mapping_ptrs = calloc(nmaps ? nmaps : 1, sizeof *mapping_ptrs);
	if (!mappings || !mapping_ptrs)
		b.err = -ENOMEM;
	for (unsigned i = 0; i < nmaps && !b.err; i++) {
		mapping_t *m = &mappings[i];
		perftools__profiles__mapping__init(m);
		m->id = i + 1;
		m->memory_start = maps[i].start;
		m->memory_limit = maps[i].limit;
		m->file_offset = maps[i].offset;
		m->filename = intern(&b, maps[i].path);
		m->build_id = intern(&b, maps[i].build_id);
		m->has_functions = maps[i].has_functions;
		m->has_filenames = maps[i].has_filenames;
		m->has_line_numbers = maps[i].has_line_numbers;
		m->has_inline_frames = maps[i].has_inline_frames;
		mapping_ptrs[i] = m;
	}
	for (size_t i = 0; i < b.nlocations; i++) {
		int m = b.location_mapping[i];
		b.locations[i]->mapping_id = (m >= 0 && (unsigned)m < nmaps) ? (uint64_t)m + 1 : 0;
	}

	/* The settings that shaped this kind's numbers, for whoever reads it
	 * later (pprof -comments). */
	char comment[160] = "";
	if (b.format->comment)
		b.format->comment(comment, sizeof comment);
	int64_t comment_id = intern(&b, comment);
	int64_t default_type = intern(&b, opt->default_type ? opt->default_type
							     : b.format->default_type);

	int err = b.err;
	if (!err) {
		p.n_sample_type = b.format->nvalues;
		p.sample_type = type_ptrs;
		p.period_type = &period_type;
		p.period = cprof_pprof_period[kind];
		p.n_sample = b.nsamples;
		p.sample = b.samples;
		p.n_mapping = nmaps;
		p.mapping = mapping_ptrs;
		p.n_location = b.nlocations;
		p.location = b.locations;
		p.n_function = b.nfunctions;
		p.function = b.functions;
		p.n_string_table = b.nstrings;
		p.string_table = b.strings;
		/* A snapshot kind is of one moment: now, no duration. */
		p.time_nanos = b.base ? b.base->wall_ns
				      : b.format->collect ? now_wall_ns : cprof_start_wall_ns;
		p.duration_nanos = now_wall_ns - p.time_nanos;
		p.n_comment = 1;
		p.comment = &comment_id;
		p.default_sample_type = default_type;

		size_t len = perftools__profiles__profile__get_packed_size(&p);
		uint8_t *packed = malloc(len ? len : 1);
		if (!packed) {
			err = -ENOMEM;
		} else {
			perftools__profiles__profile__pack(&p, packed);
			err = gzip_buffer(packed, len, out, out_len);
			free(packed);
		}
	}
	free(mappings);
	free(mapping_ptrs);
	builder_free(&b);
	return err;
}
