/* profile_merge.c — merges profiles as pprof's profile.Merge does (see
 * profile_merge.h for the rules) and writes a profile as a gzipped file.
 *
 * The merged profile is built in plain arrays keyed by byte strings (a
 * small open-addressing table), then turned into a protobuf-c message,
 * packed, and read back through cprof_profile_read_buffer: what the
 * commands use is exactly what `cprof merge` writes.
 */
#include "profile_merge.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile profile_t;

/* ---- a table from byte strings to numbers -------------------------------- */

typedef struct key_table {
	struct key_slot {
		uint8_t *key; /* NULL: empty */
		size_t length;
		uint64_t hash;
		uint64_t value;
	} *slots;
	size_t mask, used;
} key_table_t;

static uint64_t hash_bytes(const void *data, size_t length)
{
	const uint8_t *p = data;
	uint64_t hash = 14695981039346656037ull;
	for (size_t i = 0; i < length; i++) {
		hash ^= p[i];
		hash *= 1099511628211ull;
	}
	return hash;
}

static int key_table_grow(key_table_t *table)
{
	size_t size = table->slots ? table->mask + 1 : 0;
	if (size != 0 && table->used * 2 < size)
		return 0;
	size_t bigger = size ? size * 2 : 256;
	struct key_slot *slots = calloc(bigger, sizeof *slots);
	if (!slots)
		return -1;
	for (size_t i = 0; i < size; i++) {
		if (!table->slots[i].key)
			continue;
		size_t slot = (size_t)table->slots[i].hash & (bigger - 1);
		while (slots[slot].key)
			slot = (slot + 1) & (bigger - 1);
		slots[slot] = table->slots[i];
	}
	free(table->slots);
	table->slots = slots;
	table->mask = bigger - 1;
	return 0;
}

/* The value for the key; when absent, inserts `fresh` and sets *added.
 * Returns -1 when out of memory. */
static int key_table_find(key_table_t *table, const void *key, size_t length,
			  uint64_t fresh, uint64_t *value, bool *added)
{
	if (key_table_grow(table) != 0)
		return -1;
	uint64_t hash = hash_bytes(key, length);
	size_t slot = (size_t)hash & table->mask;
	while (table->slots[slot].key) {
		struct key_slot *here = &table->slots[slot];
		if (here->hash == hash && here->length == length &&
		    memcmp(here->key, key, length) == 0) {
			*value = here->value;
			*added = false;
			return 0;
		}
		slot = (slot + 1) & table->mask;
	}
	uint8_t *copy = malloc(length ? length : 1);
	if (!copy)
		return -1;
	memcpy(copy, key, length);
	table->slots[slot] = (struct key_slot){ copy, length, hash, fresh };
	table->used++;
	*value = fresh;
	*added = true;
	return 0;
}

static void key_table_free(key_table_t *table)
{
	if (table->slots)
		for (size_t i = 0; i <= table->mask; i++)
			free(table->slots[i].key);
	free(table->slots);
	memset(table, 0, sizeof *table);
}

/* ---- growable arrays and key buffers -------------------------------------- */

/* Makes room for one more element in *array (of *count, *capacity). */
static int reserve(void **array, size_t *capacity, size_t count, size_t size)
{
	if (count < *capacity)
		return 0;
	size_t bigger = *capacity ? *capacity * 2 : 64;
	void *grown = realloc(*array, bigger * size);
	if (!grown)
		return -1;
	*array = grown;
	*capacity = bigger;
	return 0;
}

typedef struct bytes {
	uint8_t *data;
	size_t length, capacity;
} bytes_t;

static int bytes_put(bytes_t *b, const void *data, size_t length)
{
	if (length == 0)
		return 0;
	if (b->length + length > b->capacity) {
		size_t bigger = b->capacity ? b->capacity : 256;
		while (bigger < b->length + length)
			bigger *= 2;
		uint8_t *grown = realloc(b->data, bigger);
		if (!grown)
			return -1;
		b->data = grown;
		b->capacity = bigger;
	}
	memcpy(b->data + b->length, data, length);
	b->length += length;
	return 0;
}

static int bytes_u64(bytes_t *b, uint64_t value)
{
	return bytes_put(b, &value, sizeof value);
}

/* ---- the merged profile, as it grows -------------------------------------- */

typedef struct merged_line {
	uint64_t function_id;
	int64_t line;
} merged_line_t;

typedef struct merged_location {
	uint64_t mapping_id, address;
	bool is_folded;
	size_t first_line, line_count; /* in merge->lines */
} merged_location_t;

typedef struct merged_label {
	int64_t key, str, num, num_unit;
} merged_label_t;

typedef struct merged_sample {
	size_t first_location, location_count; /* in merge->sample_locations */
	size_t first_label, label_count;       /* in merge->labels */
	size_t first_value;                    /* in merge->values, n_sample_type of them */
} merged_sample_t;

struct cprof_merge {
	size_t profiles;
	char first_name[256];
	/* header */
	size_t n_sample_type;
	int64_t *sample_type; /* type, unit pairs: merged string indices */
	int64_t period_type[2];
	bool has_period_type;
	int64_t period, time_nanos, duration_nanos, drop_frames, keep_frames,
		default_sample_type;
	int64_t *comments;
	size_t n_comment, comment_capacity;
	/* strings */
	char **strings;
	size_t n_string, string_capacity;
	key_table_t string_index;
	/* functions: name, system_name, filename, start_line */
	int64_t (*functions)[4];
	size_t n_function, function_capacity;
	key_table_t function_index;
	/* mappings */
	Perftools__Profiles__Mapping *mappings;
	size_t n_mapping, mapping_capacity;
	key_table_t mapping_index;
	/* locations */
	merged_location_t *locations;
	size_t n_location, location_capacity;
	merged_line_t *lines;
	size_t n_line, line_capacity;
	key_table_t location_index;
	/* samples */
	merged_sample_t *samples;
	size_t n_sample, sample_capacity;
	uint64_t *sample_locations;
	size_t n_sample_location, sample_location_capacity;
	merged_label_t *labels;
	size_t n_label, label_capacity;
	int64_t *values;
	size_t n_value, value_capacity;
	key_table_t sample_index;
	bytes_t key;
};

cprof_merge_t *cprof_merge_new(void)
{
	return calloc(1, sizeof(cprof_merge_t));
}

size_t cprof_merge_count(const cprof_merge_t *merge)
{
	return merge->profiles;
}

void cprof_merge_free(cprof_merge_t *merge)
{
	if (!merge)
		return;
	for (size_t i = 0; i < merge->n_string; i++)
		free(merge->strings[i]);
	free(merge->strings);
	free(merge->sample_type);
	free(merge->comments);
	free(merge->functions);
	free(merge->mappings);
	free(merge->locations);
	free(merge->lines);
	free(merge->samples);
	free(merge->sample_locations);
	free(merge->labels);
	free(merge->values);
	free(merge->key.data);
	key_table_free(&merge->string_index);
	key_table_free(&merge->function_index);
	key_table_free(&merge->mapping_index);
	key_table_free(&merge->location_index);
	key_table_free(&merge->sample_index);
	free(merge);
}

/* The merged index of string `s`, added when new; -1 when out of memory. */
static int64_t merged_string(cprof_merge_t *merge, const char *s)
{
	uint64_t value;
	bool added;
	if (key_table_find(&merge->string_index, s, strlen(s), merge->n_string, &value,
			   &added) != 0)
		return -1;
	if (added) {
		if (reserve((void **)&merge->strings, &merge->string_capacity, merge->n_string,
			    sizeof *merge->strings) != 0)
			return -1;
		char *copy = strdup(s);
		if (!copy)
			return -1;
		merge->strings[merge->n_string++] = copy;
	}
	return (int64_t)value;
}

/* Per source profile: its strings, functions, mappings and locations in
 * the merged profile, made on first use (0 = not yet). */
typedef struct source_map {
	const profile_t *profile;
	int64_t *strings;    /* + 1 */
	uint64_t *functions; /* merged id */
	uint64_t *mappings;  /* merged id */
	int64_t *mapping_shift;
	uint64_t *locations; /* merged id */
} source_map_t;

static int64_t map_string(cprof_merge_t *merge, source_map_t *map, int64_t index)
{
	if (map->strings[index] == 0) {
		int64_t merged = merged_string(merge, map->profile->string_table[index]);
		if (merged < 0)
			return -1;
		map->strings[index] = merged + 1;
	}
	return map->strings[index] - 1;
}

/* The index of `id` in one of the reader's id-sorted arrays. */
#define INDEX_OF(array, count, wanted)                                \
	({                                                            \
		size_t low_ = 0, high_ = (count);                     \
		while (low_ < high_) {                                \
			size_t mid_ = low_ + (high_ - low_) / 2;      \
			if ((array)[mid_]->id < (wanted))             \
				low_ = mid_ + 1;                      \
			else                                          \
				high_ = mid_;                         \
		}                                                     \
		low_;                                                 \
	})

static uint64_t map_function(cprof_merge_t *merge, source_map_t *map, uint64_t id)
{
	const profile_t *p = map->profile;
	size_t i = INDEX_OF(p->function, p->n_function, id);
	if (map->functions[i])
		return map->functions[i];
	const Perftools__Profiles__Function *f = p->function[i];
	int64_t fields[4] = { map_string(merge, map, f->name),
			      map_string(merge, map, f->system_name),
			      map_string(merge, map, f->filename), f->start_line };
	if (fields[0] < 0 || fields[1] < 0 || fields[2] < 0)
		return 0;
	uint64_t value;
	bool added;
	if (key_table_find(&merge->function_index, fields, sizeof fields, merge->n_function + 1,
			   &value, &added) != 0)
		return 0;
	if (added) {
		if (reserve((void **)&merge->functions, &merge->function_capacity,
			    merge->n_function, sizeof *merge->functions) != 0)
			return 0;
		memcpy(merge->functions[merge->n_function++], fields, sizeof fields);
	}
	return map->functions[i] = value;
}

static uint64_t map_mapping(cprof_merge_t *merge, source_map_t *map, uint64_t id)
{
	const profile_t *p = map->profile;
	size_t i = INDEX_OF(p->mapping, p->n_mapping, id);
	if (map->mappings[i])
		return map->mappings[i];
	const Perftools__Profiles__Mapping *m = p->mapping[i];
	uint64_t size = m->memory_limit - m->memory_start;
	size = (size + 0xfff) & ~(uint64_t)0xfff;
	const char *build_id = p->string_table[m->build_id];
	int64_t file = map_string(merge, map, build_id[0] ? m->build_id : m->filename);
	int64_t filename = map_string(merge, map, m->filename);
	int64_t build = map_string(merge, map, m->build_id);
	if (file < 0 || filename < 0 || build < 0)
		return 0;
	uint64_t key[4] = { size, m->file_offset, (uint64_t)file, build_id[0] ? 1 : 0 };
	uint64_t value;
	bool added;
	if (key_table_find(&merge->mapping_index, key, sizeof key, merge->n_mapping + 1, &value,
			   &added) != 0)
		return 0;
	if (added) {
		if (reserve((void **)&merge->mappings, &merge->mapping_capacity, merge->n_mapping,
			    sizeof *merge->mappings) != 0)
			return 0;
		Perftools__Profiles__Mapping *out = &merge->mappings[merge->n_mapping++];
		*out = *m;
		out->base.unknown_fields = NULL;
		out->base.n_unknown_fields = 0;
		out->id = value;
		out->filename = filename;
		out->build_id = build;
	}
	/* Addresses move onto the merged mapping: ASLR put each process's
	 * copy of the program somewhere else. */
	map->mapping_shift[i] = (int64_t)(merge->mappings[value - 1].memory_start - m->memory_start);
	return map->mappings[i] = value;
}

static uint64_t map_location(cprof_merge_t *merge, source_map_t *map, uint64_t id)
{
	const profile_t *p = map->profile;
	size_t i = INDEX_OF(p->location, p->n_location, id);
	if (map->locations[i])
		return map->locations[i];
	const Perftools__Profiles__Location *l = p->location[i];
	uint64_t mapping = 0, address = l->address, key_address = l->address;
	if (l->mapping_id != 0) {
		mapping = map_mapping(merge, map, l->mapping_id);
		if (mapping == 0)
			return 0;
		size_t m = INDEX_OF(p->mapping, p->n_mapping, l->mapping_id);
		address = l->address + (uint64_t)map->mapping_shift[m];
		key_address = address - merge->mappings[mapping - 1].memory_start;
	}
	bytes_t *key = &merge->key;
	key->length = 0;
	if (bytes_u64(key, key_address) || bytes_u64(key, mapping) ||
	    bytes_u64(key, l->is_folded))
		return 0;
	size_t first_line = merge->n_line;
	for (size_t j = 0; j < l->n_line; j++) {
		uint64_t function = map_function(merge, map, l->line[j]->function_id);
		if (function == 0 || bytes_u64(key, function) ||
		    bytes_u64(key, (uint64_t)l->line[j]->line))
			return 0;
	}
	uint64_t value;
	bool added;
	if (key_table_find(&merge->location_index, key->data, key->length, merge->n_location + 1,
			   &value, &added) != 0)
		return 0;
	if (added) {
		if (reserve((void **)&merge->locations, &merge->location_capacity,
			    merge->n_location, sizeof *merge->locations) != 0)
			return 0;
		for (size_t j = 0; j < l->n_line; j++) {
			if (reserve((void **)&merge->lines, &merge->line_capacity, merge->n_line,
				    sizeof *merge->lines) != 0)
				return 0;
			uint64_t function;
			memcpy(&function, key->data + 24 + 16 * j, sizeof function);
			merge->lines[merge->n_line++] =
				(merged_line_t){ function, l->line[j]->line };
		}
		merge->locations[merge->n_location++] = (merged_location_t){
			mapping, address, l->is_folded, first_line, l->n_line
		};
	}
	return map->locations[i] = value;
}

static int compare_labels(const void *a, const void *b)
{
	const merged_label_t *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->str != y->str)
		return x->str < y->str ? -1 : 1;
	if (x->num != y->num)
		return x->num < y->num ? -1 : 1;
	return (x->num_unit > y->num_unit) - (x->num_unit < y->num_unit);
}

static bool all_zero(const Perftools__Profiles__Sample *sample)
{
	for (size_t i = 0; i < sample->n_value; i++)
		if (sample->value[i] != 0)
			return false;
	return true;
}

static void set_error(char *err, size_t errlen, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t errlen, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	vsnprintf(err, errlen, format, args);
	va_end(args);
	for (char *c = err; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

/* "cpu/nanoseconds, samples/count" for messages. */
static void describe_types(const profile_t *p, char *buffer, size_t size)
{
	buffer[0] = '\0';
	for (size_t i = 0; i < p->n_sample_type; i++) {
		size_t used = strlen(buffer);
		snprintf(buffer + used, size - used, "%s%s/%s", i ? ", " : "",
			 p->string_table[p->sample_type[i]->type],
			 p->string_table[p->sample_type[i]->unit]);
	}
	if (!buffer[0])
		snprintf(buffer, size, "(none)");
}

/* Whether `p` has the first profile's sample and period types. */
static bool compatible(cprof_merge_t *merge, const profile_t *p)
{
	if (p->n_sample_type != merge->n_sample_type)
		return false;
	for (size_t i = 0; i < p->n_sample_type; i++)
		if (strcmp(p->string_table[p->sample_type[i]->type],
			   merge->strings[merge->sample_type[2 * i]]) != 0 ||
		    strcmp(p->string_table[p->sample_type[i]->unit],
			   merge->strings[merge->sample_type[2 * i + 1]]) != 0)
			return false;
	const char *type = p->period_type ? p->string_table[p->period_type->type] : "";
	const char *unit = p->period_type ? p->string_table[p->period_type->unit] : "";
	return strcmp(type, merge->strings[merge->period_type[0]]) == 0 &&
	       strcmp(unit, merge->strings[merge->period_type[1]]) == 0;
}

static int add_header(cprof_merge_t *merge, const profile_t *p, source_map_t *map)
{
	if (merge->profiles == 0) {
		if (merged_string(merge, "") != 0)
			return -1;
		merge->n_sample_type = p->n_sample_type;
		merge->sample_type = calloc(2 * p->n_sample_type + 1, sizeof(int64_t));
		if (!merge->sample_type)
			return -1;
		for (size_t i = 0; i < p->n_sample_type; i++) {
			merge->sample_type[2 * i] = map_string(merge, map, p->sample_type[i]->type);
			merge->sample_type[2 * i + 1] =
				map_string(merge, map, p->sample_type[i]->unit);
			if (merge->sample_type[2 * i] < 0 || merge->sample_type[2 * i + 1] < 0)
				return -1;
		}
		merge->has_period_type = p->period_type != NULL;
		merge->period_type[0] = p->period_type ? map_string(merge, map, p->period_type->type) : 0;
		merge->period_type[1] = p->period_type ? map_string(merge, map, p->period_type->unit) : 0;
		merge->drop_frames = map_string(merge, map, p->drop_frames);
		merge->keep_frames = map_string(merge, map, p->keep_frames);
		if (merge->period_type[0] < 0 || merge->period_type[1] < 0 ||
		    merge->drop_frames < 0 || merge->keep_frames < 0)
			return -1;
	}
	if (p->time_nanos != 0 && (merge->time_nanos == 0 || p->time_nanos < merge->time_nanos))
		merge->time_nanos = p->time_nanos;
	merge->duration_nanos = cprof_add_saturating(merge->duration_nanos, p->duration_nanos);
	if (p->period > merge->period)
		merge->period = p->period;
	if (merge->default_sample_type == 0 && p->default_sample_type != 0) {
		merge->default_sample_type = map_string(merge, map, p->default_sample_type);
		if (merge->default_sample_type < 0)
			return -1;
	}
	for (size_t i = 0; i < p->n_comment; i++) {
		int64_t comment = map_string(merge, map, p->comment[i]);
		if (comment < 0)
			return -1;
		bool seen = false;
		for (size_t j = 0; j < merge->n_comment && !seen; j++)
			seen = merge->comments[j] == comment;
		if (seen)
			continue;
		if (reserve((void **)&merge->comments, &merge->comment_capacity, merge->n_comment,
			    sizeof *merge->comments) != 0)
			return -1;
		merge->comments[merge->n_comment++] = comment;
	}
	return 0;
}

static int add_sample(cprof_merge_t *merge, source_map_t *map,
		      const Perftools__Profiles__Sample *s, int64_t label_key, int64_t label_value)
{
	const profile_t *p = map->profile;
	bytes_t *key = &merge->key;
	/* Locations first (map_location uses the key buffer itself). */
	size_t first_location = merge->n_sample_location;
	for (size_t j = 0; j < s->n_location_id; j++) {
		uint64_t location = map_location(merge, map, s->location_id[j]);
		if (location == 0)
			return -1;
		if (reserve((void **)&merge->sample_locations, &merge->sample_location_capacity,
			    merge->n_sample_location, sizeof *merge->sample_locations) != 0)
			return -1;
		merge->sample_locations[merge->n_sample_location++] = location;
	}
	size_t first_label = merge->n_label;
	bool has_key = false;
	for (size_t j = 0; j < s->n_label; j++) {
		const Perftools__Profiles__Label *l = s->label[j];
		merged_label_t label = { map_string(merge, map, l->key), map_string(merge, map, l->str),
					 l->num, map_string(merge, map, l->num_unit) };
		if (label.key < 0 || label.str < 0 || label.num_unit < 0)
			return -1;
		if (label_key > 0 && label.key == label_key)
			has_key = true;
		if (reserve((void **)&merge->labels, &merge->label_capacity, merge->n_label,
			    sizeof *merge->labels) != 0)
			return -1;
		merge->labels[merge->n_label++] = label;
	}
	if (label_key > 0 && !has_key) {
		if (reserve((void **)&merge->labels, &merge->label_capacity, merge->n_label,
			    sizeof *merge->labels) != 0)
			return -1;
		merge->labels[merge->n_label++] = (merged_label_t){ label_key, label_value, 0, 0 };
	}
	size_t label_count = merge->n_label - first_label;
	if (label_count > 1)
		qsort(merge->labels + first_label, label_count, sizeof *merge->labels,
		      compare_labels);

	key->length = 0;
	if (bytes_u64(key, s->n_location_id) ||
	    bytes_put(key, merge->sample_locations + first_location,
		      s->n_location_id * sizeof(uint64_t)) ||
	    bytes_put(key, merge->labels + first_label, label_count * sizeof(merged_label_t)))
		return -1;
	uint64_t value;
	bool added;
	if (key_table_find(&merge->sample_index, key->data, key->length, merge->n_sample, &value,
			   &added) != 0)
		return -1;
	if (!added) {
		/* The same stack and labels: add up, and drop what was appended. */
		merged_sample_t *old = &merge->samples[value];
		for (size_t t = 0; t < p->n_sample_type; t++)
			merge->values[old->first_value + t] = cprof_add_saturating(
				merge->values[old->first_value + t], s->value[t]);
		merge->n_sample_location = first_location;
		merge->n_label = first_label;
		return 0;
	}
	if (reserve((void **)&merge->samples, &merge->sample_capacity, merge->n_sample,
		    sizeof *merge->samples) != 0)
		return -1;
	size_t first_value = merge->n_value;
	for (size_t t = 0; t < p->n_sample_type; t++) {
		if (reserve((void **)&merge->values, &merge->value_capacity, merge->n_value,
			    sizeof *merge->values) != 0)
			return -1;
		merge->values[merge->n_value++] = s->value[t];
	}
	merge->samples[merge->n_sample++] = (merged_sample_t){
		first_location, s->n_location_id, first_label, label_count, first_value
	};
	return 0;
}

int cprof_merge_add(cprof_merge_t *merge, const profile_t *p, const char *name,
		    const char *label_key, const char *label_value, char *err, size_t errlen)
{
	if (merge->profiles > 0 && !compatible(merge, p)) {
		char mine[512], theirs[512];
		describe_types(p, mine, sizeof mine);
		snprintf(theirs, sizeof theirs, "%s", "(none)");
		theirs[0] = '\0';
		for (size_t i = 0; i < merge->n_sample_type; i++) {
			size_t used = strlen(theirs);
			snprintf(theirs + used, sizeof theirs - used, "%s%s/%s", i ? ", " : "",
				 merge->strings[merge->sample_type[2 * i]],
				 merge->strings[merge->sample_type[2 * i + 1]]);
		}
		set_error(err, errlen,
			  "%s: sample types %s differ from %s's %s; profiles of different kinds "
			  "do not merge", name, mine, merge->first_name, theirs[0] ? theirs : "(none)");
		return -1;
	}
	source_map_t map = { .profile = p };
	map.strings = calloc(p->n_string_table + 1, sizeof *map.strings);
	map.functions = calloc(p->n_function + 1, sizeof *map.functions);
	map.mappings = calloc(p->n_mapping + 1, sizeof *map.mappings);
	map.mapping_shift = calloc(p->n_mapping + 1, sizeof *map.mapping_shift);
	map.locations = calloc(p->n_location + 1, sizeof *map.locations);
	int result = -1;
	if (!map.strings || !map.functions || !map.mappings || !map.mapping_shift ||
	    !map.locations)
		goto done;
	if (add_header(merge, p, &map) != 0)
		goto done;
	if (merge->profiles == 0)
		snprintf(merge->first_name, sizeof merge->first_name, "%s", name);
	int64_t key = 0, value = 0;
	if (label_key) {
		key = merged_string(merge, label_key);
		value = merged_string(merge, label_value ? label_value : "");
		if (key < 0 || value < 0)
			goto done;
	}
	/* The main binary's mapping first, as pprof keeps it. */
	if (merge->n_mapping == 0 && p->n_mapping > 0 &&
	    map_mapping(merge, &map, p->mapping[0]->id) == 0)
		goto done;
	for (size_t i = 0; i < p->n_sample; i++)
		if (!all_zero(p->sample[i]) && add_sample(merge, &map, p->sample[i], key, value) != 0)
			goto done;
	merge->profiles++;
	result = 0;
done:
	if (result != 0)
		set_error(err, errlen, "%s: out of memory while merging", name);
	free(map.strings);
	free(map.functions);
	free(map.mappings);
	free(map.mapping_shift);
	free(map.locations);
	return result;
}

/* ---- the message ----------------------------------------------------------- */

/* Packs the merged profile into a malloc'd buffer. */
static int pack_merged(const cprof_merge_t *m, uint8_t **out, size_t *out_length)
{
	int result = -1;
	profile_t p;
	perftools__profiles__profile__init(&p);
	Perftools__Profiles__ValueType *types = calloc(m->n_sample_type + 1, sizeof *types);
	Perftools__Profiles__ValueType **type_list = calloc(m->n_sample_type + 1, sizeof *type_list);
	Perftools__Profiles__ValueType period_type;
	Perftools__Profiles__Sample *samples = calloc(m->n_sample + 1, sizeof *samples);
	Perftools__Profiles__Sample **sample_list = calloc(m->n_sample + 1, sizeof *sample_list);
	Perftools__Profiles__Label *labels = calloc(m->n_label + 1, sizeof *labels);
	Perftools__Profiles__Label **label_list = calloc(m->n_label + 1, sizeof *label_list);
	Perftools__Profiles__Mapping **mapping_list = calloc(m->n_mapping + 1, sizeof *mapping_list);
	Perftools__Profiles__Location *locations = calloc(m->n_location + 1, sizeof *locations);
	Perftools__Profiles__Location **location_list = calloc(m->n_location + 1, sizeof *location_list);
	Perftools__Profiles__Line *lines = calloc(m->n_line + 1, sizeof *lines);
	Perftools__Profiles__Line **line_list = calloc(m->n_line + 1, sizeof *line_list);
	Perftools__Profiles__Function *functions = calloc(m->n_function + 1, sizeof *functions);
	Perftools__Profiles__Function **function_list = calloc(m->n_function + 1, sizeof *function_list);
	uint8_t *buffer = NULL;
	if (!types || !type_list || !samples || !sample_list || !labels || !label_list ||
	    !mapping_list || !locations || !location_list || !lines || !line_list || !functions ||
	    !function_list)
		goto done;

	for (size_t i = 0; i < m->n_sample_type; i++) {
		perftools__profiles__value_type__init(&types[i]);
		types[i].type = m->sample_type[2 * i];
		types[i].unit = m->sample_type[2 * i + 1];
		type_list[i] = &types[i];
	}
	p.sample_type = type_list;
	p.n_sample_type = m->n_sample_type;
	for (size_t i = 0; i < m->n_label; i++) {
		perftools__profiles__label__init(&labels[i]);
		labels[i].key = m->labels[i].key;
		labels[i].str = m->labels[i].str;
		labels[i].num = m->labels[i].num;
		labels[i].num_unit = m->labels[i].num_unit;
		label_list[i] = &labels[i];
	}
	for (size_t i = 0; i < m->n_sample; i++) {
		const merged_sample_t *s = &m->samples[i];
		perftools__profiles__sample__init(&samples[i]);
		samples[i].location_id = m->sample_locations + s->first_location;
		samples[i].n_location_id = s->location_count;
		samples[i].value = m->values + s->first_value;
		samples[i].n_value = m->n_sample_type;
		samples[i].label = label_list + s->first_label;
		samples[i].n_label = s->label_count;
		sample_list[i] = &samples[i];
	}
	p.sample = sample_list;
	p.n_sample = m->n_sample;
	for (size_t i = 0; i < m->n_mapping; i++)
		mapping_list[i] = &m->mappings[i];
	p.mapping = mapping_list;
	p.n_mapping = m->n_mapping;
	for (size_t i = 0; i < m->n_line; i++) {
		perftools__profiles__line__init(&lines[i]);
		lines[i].function_id = m->lines[i].function_id;
		lines[i].line = m->lines[i].line;
		line_list[i] = &lines[i];
	}
	for (size_t i = 0; i < m->n_location; i++) {
		const merged_location_t *l = &m->locations[i];
		perftools__profiles__location__init(&locations[i]);
		locations[i].id = i + 1;
		locations[i].mapping_id = l->mapping_id;
		locations[i].address = l->address;
		locations[i].is_folded = l->is_folded;
		locations[i].line = line_list + l->first_line;
		locations[i].n_line = l->line_count;
		location_list[i] = &locations[i];
	}
	p.location = location_list;
	p.n_location = m->n_location;
	for (size_t i = 0; i < m->n_function; i++) {
		perftools__profiles__function__init(&functions[i]);
		functions[i].id = i + 1;
		functions[i].name = m->functions[i][0];
		functions[i].system_name = m->functions[i][1];
		functions[i].filename = m->functions[i][2];
		functions[i].start_line = m->functions[i][3];
		function_list[i] = &functions[i];
	}
	p.function = function_list;
	p.n_function = m->n_function;
	p.string_table = m->strings;
	p.n_string_table = m->n_string;
	p.drop_frames = m->drop_frames;
	p.keep_frames = m->keep_frames;
	p.time_nanos = m->time_nanos;
	p.duration_nanos = m->duration_nanos;
	if (m->has_period_type) {
		perftools__profiles__value_type__init(&period_type);
		period_type.type = m->period_type[0];
		period_type.unit = m->period_type[1];
		p.period_type = &period_type;
	}
	p.period = m->period;
	p.comment = m->comments;
	p.n_comment = m->n_comment;
	p.default_sample_type = m->default_sample_type;

	size_t length = perftools__profiles__profile__get_packed_size(&p);
	buffer = malloc(length ? length : 1);
	if (!buffer)
		goto done;
	perftools__profiles__profile__pack(&p, buffer);
	*out = buffer;
	*out_length = length;
	buffer = NULL;
	result = 0;
done:
	free(buffer);
	free(types);
	free(type_list);
	free(samples);
	free(sample_list);
	free(labels);
	free(label_list);
	free(mapping_list);
	free(locations);
	free(location_list);
	free(lines);
	free(line_list);
	free(functions);
	free(function_list);
	return result;
}

int cprof_merge_finish(cprof_merge_t *merge, profile_t **out, char *err, size_t errlen)
{
	*out = NULL;
	if (merge->profiles == 0) {
		set_error(err, errlen, "no profiles to merge");
		return -1;
	}
	uint8_t *packed;
	size_t length;
	if (pack_merged(merge, &packed, &length) != 0) {
		set_error(err, errlen, "%s: out of memory while merging", merge->first_name);
		return -1;
	}
	char name[300];
	snprintf(name, sizeof name, "%s (merged)", merge->first_name);
	int result = cprof_profile_read_buffer(packed, length, name, out, err, errlen);
	free(packed);
	return result;
}

/* ---- writing ------------------------------------------------------------------ */

static int gzip_bytes(const uint8_t *in, size_t length, uint8_t **out, size_t *out_length)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	size_t capacity = deflateBound(&z, length) + 64;
	uint8_t *buffer = malloc(capacity);
	if (!buffer || length > UINT32_MAX || capacity > UINT32_MAX) {
		free(buffer);
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)length;
	z.next_out = buffer;
	z.avail_out = (uInt)capacity;
	int status = deflate(&z, Z_FINISH);
	*out_length = capacity - z.avail_out;
	deflateEnd(&z);
	if (status != Z_STREAM_END) {
		free(buffer);
		return -1;
	}
	*out = buffer;
	return 0;
}

int cprof_profile_write(const profile_t *profile, const char *path, char *err, size_t errlen)
{
	size_t length = perftools__profiles__profile__get_packed_size(profile);
	uint8_t *packed = malloc(length ? length : 1), *zipped = NULL;
	size_t zipped_length = 0;
	if (!packed) {
		set_error(err, errlen, "%s: out of memory", path);
		return -1;
	}
	perftools__profiles__profile__pack(profile, packed);
	int result = gzip_bytes(packed, length, &zipped, &zipped_length);
	free(packed);
	if (result != 0) {
		set_error(err, errlen, "%s: cannot compress the profile", path);
		return -1;
	}
	char temporary[4096];
	if ((size_t)snprintf(temporary, sizeof temporary, "%s.tmp.%ld", path, (long)getpid()) >=
	    sizeof temporary) {
		free(zipped);
		set_error(err, errlen, "%s: path too long", path);
		return -1;
	}
	int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		set_error(err, errlen, "%s: %s", path, strerror(errno));
		free(zipped);
		return -1;
	}
	size_t written = 0;
	while (written < zipped_length) {
		ssize_t n = write(fd, zipped + written, zipped_length - written);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		written += (size_t)n;
	}
	int saved = errno;
	free(zipped);
	if (written < zipped_length || close(fd) != 0) {
		if (written == zipped_length)
			saved = errno;
		unlink(temporary);
		set_error(err, errlen, "%s: %s", path, strerror(saved ? saved : EIO));
		return -1;
	}
	if (rename(temporary, path) != 0) {
		saved = errno;
		unlink(temporary);
		set_error(err, errlen, "%s: %s", path, strerror(saved));
		return -1;
	}
	return 0;
}
