/* profile_read.c — the cprof command's profile reader and the helpers its
 * subcommands share: bounded gunzip, budgeted protobuf unpack, validation,
 * look-ups by id, names, pprof-style units and per-function totals.
 *
 * Reading goes input -> (gunzip, capped) -> protobuf-c unpack (through an
 * allocator that refuses to go past a budget) -> validation, which checks
 * every string index, every id reference and every sample's value count,
 * and sorts mappings, locations and functions by id so that look-ups are
 * binary searches. Nothing after validation needs to check again.
 */
#include "profile_read.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile profile_t;

/* ---- error messages -------------------------------------------------- */

/* Writes "<name>: <problem>" to err; control characters (a hostile file
 * name, a string from the profile) become '?' so that it stays one line. */
static void set_error(char *err, size_t errlen, const char *name,
		      const char *format, ...) __attribute__((format(printf, 4, 5)));

static void set_error(char *err, size_t errlen, const char *name,
		      const char *format, ...)
{
	if (!err || errlen == 0)
		return;
	int used = snprintf(err, errlen, "%s: ", name ? name : "(profile)");
	if (used >= 0 && (size_t)used < errlen) {
		va_list args;
		va_start(args, format);
		vsnprintf(err + used, errlen - (size_t)used, format, args);
		va_end(args);
	}
	for (char *c = err; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

/* ---- reading the input ----------------------------------------------- */

static bool is_gzip(const uint8_t *data, size_t length)
{
	return length >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/* Whether `byte` can start a Profile message: the tag of one of its
 * fields with the right wire type. A cheap filter that tells "this is not
 * a profile at all" from "this is a damaged profile". */
static bool is_profile_first_byte(uint8_t byte)
{
	static const uint8_t tags[] = {
		0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32, /* fields 1-6, length-delimited */
		0x38, 0x40, 0x48, 0x50,             /* fields 7-10, varint */
		0x5a, 0x60, 0x68, 0x6a, 0x70,       /* 11 message, 12 varint,
						       13 varint or packed, 14 varint */
	};
	for (size_t i = 0; i < sizeof tags; i++)
		if (byte == tags[i])
			return true;
	return false;
}

/* Gunzips `input` (one or more concatenated gzip members) into a malloc'd
 * buffer of at most `limit` bytes. Returns 0, or -1 with `problem` set. */
static int gunzip_bounded(const uint8_t *input, size_t input_length, size_t limit,
			  uint8_t **out, size_t *out_length,
			  char *problem, size_t problem_size)
{
	z_stream stream;
	memset(&stream, 0, sizeof stream);
	if (input_length > UINT_MAX) {
		snprintf(problem, problem_size, "compressed input too large");
		return -1;
	}
	if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
		snprintf(problem, problem_size, "cannot initialise zlib");
		return -1;
	}

	/* One byte more than the limit: producing it proves the excess. */
	size_t hard_capacity = limit + 1;
	size_t capacity = input_length < hard_capacity / 4 ? input_length * 4 : hard_capacity;
	if (capacity < 65536)
		capacity = hard_capacity < 65536 ? hard_capacity : 65536;
	uint8_t *buffer = malloc(capacity);
	if (!buffer) {
		inflateEnd(&stream);
		snprintf(problem, problem_size, "out of memory");
		return -1;
	}

	stream.next_in = (Bytef *)input;
	stream.avail_in = (uInt)input_length;
	size_t produced = 0;
	int result = -1;
	for (;;) {
		if (produced > limit)
			goto too_big;
		if (produced == capacity) {
			size_t bigger = capacity > hard_capacity / 2 ? hard_capacity : capacity * 2;
			uint8_t *grown = realloc(buffer, bigger);
			if (!grown) {
				snprintf(problem, problem_size, "out of memory");
				goto done;
			}
			buffer = grown;
			capacity = bigger;
		}
		size_t room = capacity - produced;
		if (room > UINT_MAX)
			room = UINT_MAX;
		stream.next_out = buffer + produced;
		stream.avail_out = (uInt)room;
		uInt input_before = stream.avail_in;
		int status = inflate(&stream, Z_NO_FLUSH);
		size_t made = room - stream.avail_out;
		produced += made;

		if (status == Z_STREAM_END) {
			if (stream.avail_in == 0)
				break;
			/* Another gzip member follows, as `cat a.gz b.gz` makes. */
			if (!is_gzip(stream.next_in, stream.avail_in)) {
				snprintf(problem, problem_size,
					 "%u bytes of trailing garbage after the gzip data",
					 stream.avail_in);
				goto done;
			}
			if (inflateReset(&stream) != Z_OK) {
				snprintf(problem, problem_size, "cannot reset zlib");
				goto done;
			}
			continue;
		}
		if (status == Z_DATA_ERROR || status == Z_NEED_DICT) {
			snprintf(problem, problem_size, "corrupt gzip data (%s)",
				 stream.msg ? stream.msg : "invalid data");
			goto done;
		}
		if (status == Z_MEM_ERROR) {
			snprintf(problem, problem_size, "out of memory in zlib");
			goto done;
		}
		if (status != Z_OK && status != Z_BUF_ERROR) {
			snprintf(problem, problem_size, "zlib error %d", status);
			goto done;
		}
		if (stream.avail_in == 0 && stream.avail_out != 0) {
			/* Everything consumed, room left, and no end of stream. */
			snprintf(problem, problem_size,
				 "truncated gzip data (ends after %zu decompressed bytes)",
				 produced);
			goto done;
		}
		if (made == 0 && stream.avail_in == input_before && stream.avail_out != 0) {
			snprintf(problem, problem_size, "gzip data makes no progress");
			goto done;
		}
	}
	if (produced > limit)
		goto too_big;
	result = 0;
	goto done;
too_big:
	snprintf(problem, problem_size,
		 "decompressed size exceeds the limit of %zu bytes (gzip bomb?)", limit);
done:
	inflateEnd(&stream);
	if (result == 0) {
		*out = buffer;
		*out_length = produced;
	} else {
		free(buffer);
	}
	return result;
}

/* ---- unpacking within a budget --------------------------------------- */

typedef struct unpack_budget {
	size_t used;  /* bytes handed out, plus malloc's bookkeeping */
	size_t limit;
	bool exceeded;
} unpack_budget_t;

static void *budget_alloc(void *data, size_t size)
{
	unpack_budget_t *budget = data;
	size_t cost = size + 16; /* malloc's per-block overhead, roughly */
	if (size > budget->limit || cost > budget->limit - budget->used) {
		budget->exceeded = true;
		return NULL;
	}
	void *block = malloc(size ? size : 1);
	if (block)
		budget->used += cost;
	return block;
}

static void budget_free(void *data, void *block)
{
	(void)data;
	free(block); /* the budget only grows: unpack frees only on failure */
}

/* ---- look-ups by id -------------------------------------------------- */

typedef uint64_t (*id_at_fn)(const profile_t *profile, size_t i);

static uint64_t mapping_id_at(const profile_t *profile, size_t i)
{
	return profile->mapping[i]->id;
}

static uint64_t location_id_at(const profile_t *profile, size_t i)
{
	return profile->location[i]->id;
}

static uint64_t function_id_at(const profile_t *profile, size_t i)
{
	return profile->function[i]->id;
}

/* The index of `id` in an array sorted by id, or SIZE_MAX. */
static size_t index_by_id(const profile_t *profile, size_t count, id_at_fn id_at,
			  uint64_t id)
{
	if (id == 0 || count == 0)
		return SIZE_MAX;
	if (id <= count && id_at(profile, (size_t)id - 1) == id)
		return (size_t)id - 1; /* the usual dense 1..n numbering */
	size_t low = 0, high = count;
	while (low < high) {
		size_t middle = low + (high - low) / 2;
		uint64_t here = id_at(profile, middle);
		if (here == id)
			return middle;
		if (here < id)
			low = middle + 1;
		else
			high = middle;
	}
	return SIZE_MAX;
}

static size_t location_index(const profile_t *profile, uint64_t id)
{
	return index_by_id(profile, profile->n_location, location_id_at, id);
}

static size_t function_index(const profile_t *profile, uint64_t id)
{
	return index_by_id(profile, profile->n_function, function_id_at, id);
}

static size_t mapping_index(const profile_t *profile, uint64_t id)
{
	return index_by_id(profile, profile->n_mapping, mapping_id_at, id);
}

const Perftools__Profiles__Location *cprof_profile_location(const profile_t *profile,
							     uint64_t id)
{
	size_t i = location_index(profile, id);
	return i == SIZE_MAX ? NULL : profile->location[i];
}

const Perftools__Profiles__Function *cprof_profile_function(const profile_t *profile,
							     uint64_t id)
{
	size_t i = function_index(profile, id);
	return i == SIZE_MAX ? NULL : profile->function[i];
}

const Perftools__Profiles__Mapping *cprof_profile_mapping(const profile_t *profile,
							   uint64_t id)
{
	size_t i = mapping_index(profile, id);
	return i == SIZE_MAX ? NULL : profile->mapping[i];
}

/* ---- validation ------------------------------------------------------ */

static int compare_mapping_ids(const void *a, const void *b)
{
	uint64_t x = (*(Perftools__Profiles__Mapping *const *)a)->id;
	uint64_t y = (*(Perftools__Profiles__Mapping *const *)b)->id;
	return (x > y) - (x < y);
}

static int compare_location_ids(const void *a, const void *b)
{
	uint64_t x = (*(Perftools__Profiles__Location *const *)a)->id;
	uint64_t y = (*(Perftools__Profiles__Location *const *)b)->id;
	return (x > y) - (x < y);
}

static int compare_function_ids(const void *a, const void *b)
{
	uint64_t x = (*(Perftools__Profiles__Function *const *)a)->id;
	uint64_t y = (*(Perftools__Profiles__Function *const *)b)->id;
	return (x > y) - (x < y);
}

/* Sorts an array by id and checks that ids are nonzero and unique. */
static int sort_and_check_ids(profile_t *profile, void *array, size_t count,
			      int (*compare)(const void *, const void *),
			      id_at_fn id_at, const char *what,
			      char *problem, size_t problem_size)
{
	if (count > 1)
		qsort(array, count, sizeof(void *), compare);
	for (size_t i = 0; i < count; i++) {
		uint64_t id = id_at(profile, i);
		if (id == 0) {
			snprintf(problem, problem_size, "invalid profile: %s with id 0", what);
			return -1;
		}
		if (i > 0 && id_at(profile, i - 1) == id) {
			snprintf(problem, problem_size,
				 "invalid profile: two %ss with id %" PRIu64, what, id);
			return -1;
		}
	}
	return 0;
}

/* Checks one string index; `context` (printf format) says whose it is. */
static int check_string(const profile_t *profile, int64_t index,
			char *problem, size_t problem_size, const char *context, ...)
	__attribute__((format(printf, 5, 6)));

static int check_string(const profile_t *profile, int64_t index,
			char *problem, size_t problem_size, const char *context, ...)
{
	if (index >= 0 && (uint64_t)index < profile->n_string_table)
		return 0;
	char where[128];
	va_list args;
	va_start(args, context);
	vsnprintf(where, sizeof where, context, args);
	va_end(args);
	snprintf(problem, problem_size,
		 "invalid profile: string index %" PRId64 " out of range "
		 "(table has %zu) in %s", index, profile->n_string_table, where);
	return -1;
}

/* `what` names the value type: "sample type 2", "period type". */
static int check_value_type(const profile_t *profile,
			    const Perftools__Profiles__ValueType *type,
			    char *problem, size_t size, const char *what)
{
	if (check_string(profile, type->type, problem, size, "%s type", what) ||
	    check_string(profile, type->unit, problem, size, "%s unit", what))
		return -1;
	return 0;
}

static int validate(profile_t *profile, char *problem, size_t size)
{
	if (profile->n_string_table == 0) {
		snprintf(problem, size, "invalid profile: no string table");
		return -1;
	}
	if (profile->string_table[0][0] != '\0') {
		snprintf(problem, size, "invalid profile: string_table[0] is not empty");
		return -1;
	}
	if (profile->n_sample_type > INT_MAX) {
		snprintf(problem, size, "invalid profile: too many sample types");
		return -1;
	}

	for (size_t i = 0; i < profile->n_sample_type; i++) {
		char what[48];
		snprintf(what, sizeof what, "sample type %zu", i);
		if (check_value_type(profile, profile->sample_type[i], problem, size, what))
			return -1;
	}
	if (profile->period_type &&
	    check_value_type(profile, profile->period_type, problem, size, "period type"))
		return -1;
	if (check_string(profile, profile->drop_frames, problem, size, "drop_frames") ||
	    check_string(profile, profile->keep_frames, problem, size, "keep_frames") ||
	    check_string(profile, profile->default_sample_type, problem, size,
			 "default_sample_type"))
		return -1;
	for (size_t i = 0; i < profile->n_comment; i++)
		if (check_string(profile, profile->comment[i], problem, size, "comment %zu", i))
			return -1;

	if (sort_and_check_ids(profile, profile->mapping, profile->n_mapping,
			       compare_mapping_ids, mapping_id_at, "mapping", problem, size) ||
	    sort_and_check_ids(profile, profile->location, profile->n_location,
			       compare_location_ids, location_id_at, "location", problem, size) ||
	    sort_and_check_ids(profile, profile->function, profile->n_function,
			       compare_function_ids, function_id_at, "function", problem, size))
		return -1;

	for (size_t i = 0; i < profile->n_mapping; i++) {
		const Perftools__Profiles__Mapping *mapping = profile->mapping[i];
		if (check_string(profile, mapping->filename, problem, size,
				 "mapping %" PRIu64 " filename", mapping->id) ||
		    check_string(profile, mapping->build_id, problem, size,
				 "mapping %" PRIu64 " build_id", mapping->id))
			return -1;
		/* No path is longer; and address names stay cheap to make. */
		if (strnlen(profile->string_table[mapping->filename], PATH_MAX + 1) > PATH_MAX) {
			snprintf(problem, size,
				 "invalid profile: mapping %" PRIu64 " filename longer "
				 "than %d bytes", mapping->id, PATH_MAX);
			return -1;
		}
	}
	for (size_t i = 0; i < profile->n_function; i++) {
		const Perftools__Profiles__Function *function = profile->function[i];
		if (check_string(profile, function->name, problem, size,
				 "function %" PRIu64 " name", function->id) ||
		    check_string(profile, function->system_name, problem, size,
				 "function %" PRIu64 " system_name", function->id) ||
		    check_string(profile, function->filename, problem, size,
				 "function %" PRIu64 " filename", function->id))
			return -1;
	}
	for (size_t i = 0; i < profile->n_location; i++) {
		const Perftools__Profiles__Location *location = profile->location[i];
		if (location->mapping_id != 0 &&
		    mapping_index(profile, location->mapping_id) == SIZE_MAX) {
			snprintf(problem, size,
				 "invalid profile: location %" PRIu64 " refers to "
				 "mapping %" PRIu64 ", which does not exist",
				 location->id, location->mapping_id);
			return -1;
		}
		for (size_t j = 0; j < location->n_line; j++) {
			uint64_t id = location->line[j]->function_id;
			if (function_index(profile, id) == SIZE_MAX) {
				snprintf(problem, size,
					 "invalid profile: location %" PRIu64 " line %zu "
					 "refers to function %" PRIu64 ", which does not exist",
					 location->id, j, id);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < profile->n_sample; i++) {
		const Perftools__Profiles__Sample *sample = profile->sample[i];
		if (sample->n_value != profile->n_sample_type) {
			snprintf(problem, size,
				 "invalid profile: sample %zu has %zu values for %zu sample types",
				 i, sample->n_value, profile->n_sample_type);
			return -1;
		}
		for (size_t j = 0; j < sample->n_location_id; j++) {
			if (location_index(profile, sample->location_id[j]) == SIZE_MAX) {
				snprintf(problem, size,
					 "invalid profile: sample %zu refers to location %"
					 PRIu64 ", which does not exist",
					 i, sample->location_id[j]);
				return -1;
			}
		}
		for (size_t j = 0; j < sample->n_label; j++) {
			const Perftools__Profiles__Label *label = sample->label[j];
			if (check_string(profile, label->key, problem, size,
					 "sample %zu label %zu key", i, j) ||
			    check_string(profile, label->str, problem, size,
					 "sample %zu label %zu str", i, j) ||
			    check_string(profile, label->num_unit, problem, size,
					 "sample %zu label %zu num_unit", i, j))
				return -1;
		}
	}
	return 0;
}

/* ---- the readers ----------------------------------------------------- */

int cprof_profile_read_buffer(const void *data, size_t length, const char *name,
			      profile_t **out, char *err, size_t errlen)
{
	return cprof_profile_read_buffer_with_limits(data, length, name, NULL, out, err,
						     errlen);
}

int cprof_profile_read_buffer_with_limits(const void *data, size_t length,
					  const char *name,
					  const cprof_profile_limits_t *limits,
					  profile_t **out, char *err, size_t errlen)
{
	const uint8_t *bytes = data;
	char problem[256];
	*out = NULL;
	if (!name)
		name = "(profile)";
	size_t max_input = CPROF_PROFILE_MAX_INPUT_BYTES;
	size_t max_decompressed = CPROF_PROFILE_MAX_DECOMPRESSED_BYTES;
	size_t max_unpacked = CPROF_PROFILE_MAX_UNPACKED_BYTES;
	if (limits && limits->max_input_bytes)
		max_input = limits->max_input_bytes;
	if (limits && limits->max_decompressed_bytes)
		max_decompressed = limits->max_decompressed_bytes;
	if (limits && limits->max_unpacked_bytes)
		max_unpacked = limits->max_unpacked_bytes;

	if (length == 0) {
		set_error(err, errlen, name, "empty file");
		return -1;
	}
	if (length > max_input) {
		set_error(err, errlen, name, "too large (%zu bytes; the limit is %zu bytes)",
			  length, max_input);
		return -1;
	}

	uint8_t *decompressed = NULL;
	const uint8_t *message = bytes;
	size_t message_length = length;
	bool gzipped = is_gzip(bytes, length);
	if (gzipped) {
		if (gunzip_bounded(bytes, length, max_decompressed,
				   &decompressed, &message_length,
				   problem, sizeof problem) != 0) {
			set_error(err, errlen, name, "%s", problem);
			return -1;
		}
		message = decompressed;
		if (message_length == 0) {
			free(decompressed);
			set_error(err, errlen, name, "empty profile inside the gzip data");
			return -1;
		}
	}
	if (!is_profile_first_byte(message[0])) {
		if (gzipped)
			set_error(err, errlen, name,
				  "gzip data does not hold a protobuf profile: bad first byte 0x%02x",
				  message[0]);
		else
			set_error(err, errlen, name,
				  "not gzip or protobuf: bad magic 0x%02x 0x%02x",
				  message[0], length > 1 ? message[1] : 0);
		free(decompressed);
		return -1;
	}

	unpack_budget_t budget = { .used = 0, .limit = max_unpacked };
	ProtobufCAllocator allocator = {
		.alloc = budget_alloc,
		.free = budget_free,
		.allocator_data = &budget,
	};
	profile_t *profile = perftools__profiles__profile__unpack(&allocator, message_length,
								  message);
	free(decompressed);
	if (!profile) {
		if (budget.exceeded)
			set_error(err, errlen, name,
				  "profile needs more than %zu bytes of memory once decoded",
				  max_unpacked);
		else
			set_error(err, errlen, name, "corrupt protobuf%s",
				  gzipped ? " inside the gzip data" : "");
		return -1;
	}
	if (validate(profile, problem, sizeof problem) != 0) {
		set_error(err, errlen, name, "%s", problem);
		cprof_profile_free(profile);
		return -1;
	}
	*out = profile;
	return 0;
}

int cprof_profile_read(const char *path, profile_t **out, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_error(err, errlen, path, "%s", strerror(errno));
		return -1;
	}
	struct stat status;
	if (fstat(fd, &status) != 0) {
		set_error(err, errlen, path, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISDIR(status.st_mode)) {
		set_error(err, errlen, path, "%s", strerror(EISDIR));
		close(fd);
		return -1;
	}
	if (S_ISREG(status.st_mode) &&
	    (uint64_t)status.st_size > CPROF_PROFILE_MAX_INPUT_BYTES) {
		set_error(err, errlen, path, "too large (%jd bytes; the limit is %zu bytes)",
			  (intmax_t)status.st_size, CPROF_PROFILE_MAX_INPUT_BYTES);
		close(fd);
		return -1;
	}

	/* Read to the end whatever the size said (pipes, growing files), but
	 * never more than the limit plus the one byte that proves the excess. */
	size_t hard_capacity = CPROF_PROFILE_MAX_INPUT_BYTES + 1;
	size_t capacity = 65536;
	if (S_ISREG(status.st_mode) && (uint64_t)status.st_size + 1 > capacity)
		capacity = (size_t)status.st_size + 1;
	size_t length = 0;
	uint8_t *buffer = malloc(capacity);
	if (!buffer) {
		set_error(err, errlen, path, "out of memory");
		close(fd);
		return -1;
	}
	for (;;) {
		if (length == capacity) {
			if (capacity == hard_capacity)
				break;
			size_t bigger = capacity > hard_capacity / 2 ? hard_capacity
								      : capacity * 2;
			uint8_t *grown = realloc(buffer, bigger);
			if (!grown) {
				set_error(err, errlen, path, "out of memory");
				free(buffer);
				close(fd);
				return -1;
			}
			buffer = grown;
			capacity = bigger;
		}
		ssize_t got = read(fd, buffer + length, capacity - length);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			set_error(err, errlen, path, "%s", strerror(errno));
			free(buffer);
			close(fd);
			return -1;
		}
		if (got == 0)
			break;
		length += (size_t)got;
	}
	close(fd);

	int result = cprof_profile_read_buffer(buffer, length, path, out, err, errlen);
	free(buffer);
	return result;
}

void cprof_profile_free(profile_t *profile)
{
	/* Unpacked through budget_alloc, which is malloc: the default
	 * allocator's free releases it. */
	if (profile)
		perftools__profiles__profile__free_unpacked(profile, NULL);
}

/* ---- strings, sample types and names --------------------------------- */

const char *cprof_profile_string(const profile_t *profile, int64_t index)
{
	if (index < 0 || (uint64_t)index >= profile->n_string_table)
		return "";
	return profile->string_table[index];
}

int cprof_profile_sample_type_index(const profile_t *profile, const char *name)
{
	for (size_t i = 0; i < profile->n_sample_type; i++)
		if (strcmp(cprof_profile_string(profile, profile->sample_type[i]->type),
			   name) == 0)
			return (int)i;
	return -1;
}

int cprof_profile_default_sample_type(const profile_t *profile)
{
	if (profile->n_sample_type == 0)
		return -1;
	const char *wanted = cprof_profile_string(profile, profile->default_sample_type);
	if (wanted[0] != '\0') {
		int i = cprof_profile_sample_type_index(profile, wanted);
		if (i >= 0)
			return i;
	}
	return (int)profile->n_sample_type - 1;
}

int cprof_profile_select_sample_type(const profile_t *profile, const char *name_or_index)
{
	if (!name_or_index)
		return cprof_profile_default_sample_type(profile);
	int i = cprof_profile_sample_type_index(profile, name_or_index);
	if (i >= 0)
		return i;
	if (name_or_index[0] < '0' || name_or_index[0] > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long number = strtoul(name_or_index, &end, 10);
	if (errno != 0 || *end != '\0' || number >= profile->n_sample_type)
		return -1;
	return (int)number;
}

/* C++ names: profiles carry them mangled (name == system_name, as pprof
 * expects, which demangles them itself). We show them as pprof does by
 * default: demangled by libstdc++'s __cxa_demangle (loaded on first need;
 * the tool is C and does not link it), without parameter lists or
 * template arguments. Results are kept per mangled string for the life of
 * the process. */
typedef char *(*cxa_demangle_fn)(const char *, char *, size_t *, int *);

static cxa_demangle_fn find_cxa_demangle(void)
{
	static int looked;
	static cxa_demangle_fn fn;
	if (!looked) {
		looked = 1;
		void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
		if (lib)
			fn = (cxa_demangle_fn)dlsym(lib, "__cxa_demangle");
	}
	return fn;
}

/* Drops <...> and the parameter list "(...)" at nesting depth 0, keeps
 * "(anonymous namespace)" and operator names. In place. */
static void simplify_demangled(char *s)
{
	char *out = s;
	int angle = 0;
	for (char *p = s; *p; p++) {
		if (strncmp(p, "(anonymous namespace)", 21) == 0 && angle == 0) {
			memcpy(out, p, 21);
			out += 21;
			p += 20;
			continue;
		}
		if (strncmp(p, "operator", 8) == 0 && angle == 0) {
			/* operator<, operator<<, operator(), ...: copy the token */
			memcpy(out, p, 8);
			out += 8;
			p += 8;
			if (p[0] == '(' && p[1] == ')') {
				memcpy(out, "()", 2); /* operator() */
				out += 2;
				p += 2;
			} else {
				while (*p && strchr("<>=!+-*/%^&|~[]", *p))
					*out++ = *p++;
			}
			p--;
			continue;
		}
		if (*p == '<') {
			angle++;
			continue;
		}
		if (*p == '>' && angle > 0) {
			angle--;
			continue;
		}
		if (angle > 0)
			continue;
		if (*p == '(')
			break; /* the parameter list: the rest is not the name */
		*out++ = *p;
	}
	*out = '\0';
	/* A return type ("void ns::f"): keep what follows the last space
	 * that is not inside "(anonymous namespace)" or after "operator". */
	char *name = s;
	for (char *p = s; *p; p++) {
		if (strncmp(p, "(anonymous namespace)", 21) == 0)
			p += 20;
		else if (strncmp(p, "operator ", 9) == 0)
			p += 8;
		else if (*p == ' ')
			name = p + 1;
	}
	if (name != s)
		memmove(s, name, strlen(name) + 1);
}

static const char *demangled_name(const char *mangled)
{
	static struct {
		const char *key;
		char *value;
	} *cache;
	static size_t cap, used;
	if (strncmp(mangled, "_Z", 2) != 0)
		return mangled;
	if (used * 2 >= cap) {
		size_t ncap = cap ? cap * 2 : 256;
		__typeof__(cache) t = calloc(ncap, sizeof *t);
		if (!t)
			return mangled;
		for (size_t i = 0; i < cap; i++) {
			if (!cache[i].key)
				continue;
			size_t j = ((uintptr_t)cache[i].key >> 3) & (ncap - 1);
			while (t[j].key)
				j = (j + 1) & (ncap - 1);
			t[j] = cache[i];
		}
		free(cache);
		cache = t;
		cap = ncap;
	}
	size_t j = ((uintptr_t)mangled >> 3) & (cap - 1);
	for (; cache[j].key; j = (j + 1) & (cap - 1))
		if (cache[j].key == mangled)
			return cache[j].value ? cache[j].value : mangled;
	cxa_demangle_fn demangle = find_cxa_demangle();
	int status = -1;
	char *value = demangle ? demangle(mangled, NULL, NULL, &status) : NULL;
	if (value && status == 0) {
		simplify_demangled(value);
		if (!value[0]) {
			free(value);
			value = NULL;
		}
	} else {
		free(value);
		value = NULL;
	}
	cache[j].key = mangled;
	cache[j].value = value;
	used++;
	return value ? value : mangled;
}

const char *cprof_profile_function_name(const profile_t *profile,
					const Perftools__Profiles__Function *function)
{
	const char *name = cprof_profile_string(profile, function->name);
	const char *system_name = cprof_profile_string(profile, function->system_name);
	if (name[0] == '\0')
		name = system_name;
	if (strcmp(name, system_name) == 0)
		name = demangled_name(name);
	return name;
}

void cprof_profile_address_name(const profile_t *profile,
				const Perftools__Profiles__Location *location,
				char *buffer, size_t size)
{
	const char *file = "";
	uint64_t address = location->address;
	const Perftools__Profiles__Mapping *mapping =
		cprof_profile_mapping(profile, location->mapping_id);
	if (mapping) {
		file = cprof_profile_string(profile, mapping->filename);
		const char *slash = strrchr(file, '/');
		if (slash)
			file = slash + 1;
		/* The address in the file, as addr2line wants it: the same in
		 * every run, whatever address randomization put it at. */
		if (address >= mapping->memory_start && address < mapping->memory_limit)
			address = address - mapping->memory_start + mapping->file_offset;
	}
	if (file[0] != '\0')
		snprintf(buffer, size, "%s 0x%" PRIx64, file, address);
	else
		snprintf(buffer, size, "0x%" PRIx64, location->address);
}

void cprof_print_escaped(FILE *stream, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			fprintf(stream, "\\x%02x", c);
		else
			putc(c, stream);
	}
}

/* ---- values and units ------------------------------------------------ */

typedef struct unit_scale {
	const char *shown;           /* how pprof prints it */
	const char *aliases[4];      /* lower case, trailing 's' removed */
	double factor;               /* in the family's base unit */
} unit_scale_t;

static const unit_scale_t memory_units[] = {
	{ "B", { "b", "byte" }, 1.0 },
	{ "kB", { "kb", "kbyte", "kilobyte" }, 1024.0 },
	{ "MB", { "mb", "mbyte", "megabyte" }, 1048576.0 },
	{ "GB", { "gb", "gbyte", "gigabyte" }, 1073741824.0 },
	{ "TB", { "tb", "tbyte", "terabyte" }, 1099511627776.0 },
	{ "PB", { "pb", "pbyte", "petabyte" }, 1125899906842624.0 },
};

static const unit_scale_t time_units[] = {
	{ "ns", { "ns", "nanosecond" }, 1.0 },
	{ "us", { "us", "microsecond" }, 1e3 },
	{ "ms", { "ms", "millisecond" }, 1e6 },
	{ "s", { "s", "sec", "second" }, 1e9 },
	{ "hrs", { "hour", "hr" }, 3600e9 },
};

/* Finds `unit` (as pprof does: case-insensitive, a trailing 's' ignored
 * when longer than two letters) in a family. */
static const unit_scale_t *find_unit(const unit_scale_t *family, size_t count,
				     const char *unit)
{
	char simple[32];
	size_t length = strlen(unit);
	if (length == 0 || length >= sizeof simple)
		return NULL;
	for (size_t i = 0; i < length; i++) {
		char c = unit[i];
		simple[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	if (length > 2 && simple[length - 1] == 's')
		length--;
	simple[length] = '\0';
	for (size_t i = 0; i < count; i++)
		for (size_t j = 0; j < 4 && family[i].aliases[j]; j++)
			if (strcmp(simple, family[i].aliases[j]) == 0)
				return &family[i];
	return NULL;
}

void cprof_format_value(int64_t value, const char *unit, char *buffer, size_t size)
{
	if (value == 0) {
		snprintf(buffer, size, "0");
		return;
	}
	const unit_scale_t *family = memory_units;
	size_t count = sizeof memory_units / sizeof memory_units[0];
	const unit_scale_t *from = find_unit(family, count, unit ? unit : "");
	if (!from) {
		family = time_units;
		count = sizeof time_units / sizeof time_units[0];
		from = find_unit(family, count, unit ? unit : "");
	}
	if (!from) {
		snprintf(buffer, size, "%" PRId64, value);
		return;
	}
	/* As a double, |INT64_MIN| is representable: no overflow here. */
	double magnitude = (value < 0 ? -(double)value : (double)value) * from->factor;
	const unit_scale_t *to = NULL;
	for (size_t i = 0; i < count; i++)
		if (magnitude / family[i].factor >= 1.0)
			to = &family[i];
	if (!to)
		to = &family[0];
	char digits[64];
	snprintf(digits, sizeof digits, "%.2f", magnitude / to->factor);
	size_t length = strlen(digits);
	if (length > 3 && strcmp(digits + length - 3, ".00") == 0)
		digits[length - 3] = '\0';
	snprintf(buffer, size, "%s%s%s", value < 0 ? "-" : "", digits, to->shown);
}

void cprof_format_percent(int64_t value, int64_t total, char *buffer, size_t size)
{
	if (total == 0) {
		snprintf(buffer, size, "0.00%%");
		return;
	}
	char digits[64];
	snprintf(digits, sizeof digits, "%.2f", (double)value / (double)total * 100.0);
	if (strcmp(digits, "100.00") == 0)
		snprintf(buffer, size, "100%%");
	else if (strcmp(digits, "-100.00") == 0)
		snprintf(buffer, size, "-100%%");
	else if (strcmp(digits, "-0.00") == 0)
		snprintf(buffer, size, "0.00%%");
	else
		snprintf(buffer, size, "%s%%", digits);
}

int64_t cprof_add_saturating(int64_t a, int64_t b)
{
	int64_t sum;
	if (!__builtin_add_overflow(a, b, &sum))
		return sum;
	return b > 0 ? INT64_MAX : INT64_MIN;
}

int64_t cprof_profile_total(const profile_t *profile, int sample_type)
{
	if (sample_type < 0 || (size_t)sample_type >= profile->n_sample_type)
		return 0;
	int64_t total = 0;
	for (size_t i = 0; i < profile->n_sample; i++) {
		int64_t value = profile->sample[i]->value[sample_type];
		int64_t magnitude = value >= 0 ? value : (value == INT64_MIN ? INT64_MAX : -value);
		total = cprof_add_saturating(total, magnitude);
	}
	return total;
}

/* ---- per-function totals --------------------------------------------- */

/* Names to row numbers: open addressing, FNV-1a, slots hold row + 1. */
typedef struct name_table {
	size_t *slots;
	size_t mask;
} name_table_t;

static uint64_t hash_name(const char *s)
{
	uint64_t hash = 14695981039346656037ull;
	for (; *s; s++) {
		hash ^= (unsigned char)*s;
		hash *= 1099511628211ull;
	}
	return hash;
}

typedef struct totals_builder {
	cprof_function_total_t *rows;
	size_t count;
	name_table_t names;
} totals_builder_t;

/* The row for `name`, added when new. SIZE_MAX when out of memory. */
static size_t row_for_name(totals_builder_t *builder, const char *name)
{
	size_t slot = (size_t)hash_name(name) & builder->names.mask;
	while (builder->names.slots[slot] != 0) {
		size_t row = builder->names.slots[slot] - 1;
		if (strcmp(builder->rows[row].name, name) == 0)
			return row;
		slot = (slot + 1) & builder->names.mask;
	}
	char *copy = strdup(name);
	if (!copy)
		return SIZE_MAX;
	size_t row = builder->count++;
	builder->rows[row] = (cprof_function_total_t){ .name = copy };
	builder->names.slots[slot] = row + 1;
	return row;
}

/* The row for string `index` of the string table, made once per index:
 * many functions may share one (long) name, and each string is hashed at
 * most once. SIZE_MAX when out of memory. */
static size_t row_for_string(totals_builder_t *builder, const profile_t *profile,
			     size_t *row_of_string, int64_t index)
{
	if (row_of_string[index] == 0) {
		size_t row = row_for_name(builder, profile->string_table[index]);
		if (row == SIZE_MAX)
			return SIZE_MAX;
		row_of_string[index] = row + 1;
	}
	return row_of_string[index] - 1;
}

int cprof_profile_function_totals(const profile_t *profile, int sample_type,
				  cprof_function_total_t **rows_out, size_t *count_out)
{
	*rows_out = NULL;
	*count_out = 0;
	if (sample_type < 0 || (size_t)sample_type >= profile->n_sample_type)
		return -1;

	/* At most one row per function and one per location; the name table
	 * is kept under half full. */
	size_t most_rows = profile->n_function + profile->n_location;
	size_t table_size = 16;
	while (table_size < 2 * most_rows)
		table_size *= 2;

	/* Each location's rows: its lines' functions innermost first, or its
	 * address name when it has no lines (or a line's function has no
	 * name). Stored flat: rows of location i are
	 * location_rows[location_start[i] .. location_start[i + 1]). */
	size_t total_lines = 0;
	for (size_t i = 0; i < profile->n_location; i++)
		total_lines += profile->location[i]->n_line ? profile->location[i]->n_line : 1;

	totals_builder_t builder = { 0 };
	size_t *row_of_string = NULL, *location_start = NULL, *location_rows = NULL;
	size_t *last_sample_seen = NULL;
	int result = -1;

	builder.rows = calloc(most_rows ? most_rows : 1, sizeof *builder.rows);
	builder.names.slots = calloc(table_size, sizeof *builder.names.slots);
	builder.names.mask = table_size - 1;
	row_of_string = calloc(profile->n_string_table, sizeof(size_t));
	location_start = calloc(profile->n_location + 1, sizeof(size_t));
	location_rows = calloc(total_lines ? total_lines : 1, sizeof(size_t));
	if (!builder.rows || !builder.names.slots || !row_of_string || !location_start ||
	    !location_rows)
		goto done;

	size_t filled = 0;
	for (size_t i = 0; i < profile->n_location; i++) {
		const Perftools__Profiles__Location *location = profile->location[i];
		location_start[i] = filled;
		size_t address_row = SIZE_MAX;
		size_t entries = location->n_line ? location->n_line : 1;
		for (size_t j = 0; j < entries; j++) {
			const Perftools__Profiles__Function *function =
				location->n_line ? cprof_profile_function(
							   profile, location->line[j]->function_id)
						 : NULL;
			int64_t name = function ? function->name : 0;
			if (function && profile->string_table[name][0] == '\0')
				name = function->system_name;
			size_t row;
			const char *shown = function ? cprof_profile_function_name(profile, function)
						     : "";
			if (function && shown != profile->string_table[name]) {
				row = row_for_name(&builder, shown); /* demangled C++ */
			} else if (profile->string_table[name][0] != '\0') {
				row = row_for_string(&builder, profile, row_of_string, name);
			} else {
				if (address_row == SIZE_MAX) {
					char address_name[PATH_MAX + 64];
					cprof_profile_address_name(profile, location, address_name,
								   sizeof address_name);
					address_row = row_for_name(&builder, address_name);
				}
				row = address_row;
			}
			if (row == SIZE_MAX)
				goto done;
			location_rows[filled++] = row;
		}
	}
	location_start[profile->n_location] = filled;

	last_sample_seen = calloc(builder.count ? builder.count : 1, sizeof(size_t));
	if (!last_sample_seen)
		goto done;
	for (size_t i = 0; i < profile->n_sample; i++) {
		const Perftools__Profiles__Sample *sample = profile->sample[i];
		int64_t value = sample->value[sample_type];
		for (size_t j = 0; j < sample->n_location_id; j++) {
			size_t location = location_index(profile, sample->location_id[j]);
			for (size_t k = location_start[location]; k < location_start[location + 1];
			     k++) {
				size_t row = location_rows[k];
				if (j == 0 && k == location_start[location])
					builder.rows[row].flat =
						cprof_add_saturating(builder.rows[row].flat, value);
				if (last_sample_seen[row] != i + 1) {
					last_sample_seen[row] = i + 1;
					builder.rows[row].cum =
						cprof_add_saturating(builder.rows[row].cum, value);
				}
			}
		}
	}

	/* Leave out the rows no sample of this type touched. */
	size_t kept = 0;
	for (size_t i = 0; i < builder.count; i++) {
		if (builder.rows[i].flat == 0 && builder.rows[i].cum == 0)
			free(builder.rows[i].name);
		else
			builder.rows[kept++] = builder.rows[i];
	}
	builder.count = kept;
	*rows_out = builder.rows;
	*count_out = builder.count;
	builder.rows = NULL;
	result = 0;
done:
	if (builder.rows)
		cprof_function_totals_free(builder.rows, builder.count);
	free(builder.names.slots);
	free(row_of_string);
	free(location_start);
	free(location_rows);
	free(last_sample_seen);
	return result;
}

int cprof_profile_label_totals(const profile_t *profile, int sample_type, const char *label_key,
			       cprof_function_total_t **rows_out, size_t *count_out)
{
	*rows_out = NULL;
	*count_out = 0;
	if (sample_type < 0 || (size_t)sample_type >= profile->n_sample_type)
		return -1;
	size_t table_size = 16;
	while (table_size < 2 * (profile->n_string_table + 1))
		table_size *= 2;
	totals_builder_t builder = { 0 };
	builder.rows = calloc(profile->n_string_table + 1, sizeof *builder.rows);
	builder.names.slots = calloc(table_size, sizeof *builder.names.slots);
	builder.names.mask = table_size - 1;
	char none[128];
	snprintf(none, sizeof none, "(no %s)", label_key);
	int result = -1;
	if (!builder.rows || !builder.names.slots)
		goto done;
	for (size_t i = 0; i < profile->n_sample; i++) {
		const Perftools__Profiles__Sample *sample = profile->sample[i];
		const char *value = none;
		for (size_t j = 0; j < sample->n_label; j++)
			if (sample->label[j]->str != 0 &&
			    strcmp(profile->string_table[sample->label[j]->key], label_key) == 0)
				value = profile->string_table[sample->label[j]->str];
		size_t row = row_for_name(&builder, value);
		if (row == SIZE_MAX)
			goto done;
		int64_t v = sample->value[sample_type];
		builder.rows[row].flat = cprof_add_saturating(builder.rows[row].flat, v);
		builder.rows[row].cum = cprof_add_saturating(builder.rows[row].cum, v);
	}
	size_t kept = 0;
	for (size_t i = 0; i < builder.count; i++) {
		if (builder.rows[i].flat == 0)
			free(builder.rows[i].name);
		else
			builder.rows[kept++] = builder.rows[i];
	}
	*rows_out = builder.rows;
	*count_out = kept;
	builder.rows = NULL;
	result = 0;
done:
	if (builder.rows)
		cprof_function_totals_free(builder.rows, builder.count);
	free(builder.names.slots);
	return result;
}

static uint64_t magnitude_of(int64_t value)
{
	return value >= 0 ? (uint64_t)value : (uint64_t)0 - (uint64_t)value;
}

static int compare_by_flat(const void *a, const void *b)
{
	const cprof_function_total_t *x = a, *y = b;
	uint64_t mx = magnitude_of(x->flat), my = magnitude_of(y->flat);
	if (mx != my)
		return mx > my ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int compare_by_cum(const void *a, const void *b)
{
	const cprof_function_total_t *x = a, *y = b;
	uint64_t mx = magnitude_of(x->cum), my = magnitude_of(y->cum);
	if (mx != my)
		return mx > my ? -1 : 1;
	return strcmp(x->name, y->name);
}

void cprof_function_totals_sort(cprof_function_total_t *rows, size_t count,
				cprof_sort_order_t order)
{
	if (count > 1)
		qsort(rows, count, sizeof *rows,
		      order == CPROF_SORT_BY_CUM ? compare_by_cum : compare_by_flat);
}

void cprof_function_totals_free(cprof_function_total_t *rows, size_t count)
{
	if (!rows)
		return;
	for (size_t i = 0; i < count; i++)
		free(rows[i].name);
	free(rows);
}

/* ---- comparing profiles (diff) --------------------------------------- */

void cprof_diff_init(cprof_diff_t *diff, bool by_cum)
{
	memset(diff, 0, sizeof *diff);
	diff->by_cum = by_cum;
}

/* Doubles the name index when it is half full. Returns 0 or -1. */
static int diff_grow_index(cprof_diff_t *diff)
{
	size_t size = diff->slots ? diff->mask + 1 : 0;
	if (size != 0 && diff->count * 2 < size)
		return 0;
	size_t bigger = size ? size * 2 : 64;
	size_t *slots = calloc(bigger, sizeof *slots);
	if (!slots)
		return -1;
	for (size_t row = 0; row < diff->count; row++) {
		size_t slot = (size_t)hash_name(diff->rows[row].name) & (bigger - 1);
		while (slots[slot] != 0)
			slot = (slot + 1) & (bigger - 1);
		slots[slot] = row + 1;
	}
	free(diff->slots);
	diff->slots = slots;
	diff->mask = bigger - 1;
	return 0;
}

/* The row for `name`, added (all zero) when new. NULL when out of memory. */
static cprof_diff_row_t *diff_row(cprof_diff_t *diff, const char *name)
{
	if (diff_grow_index(diff) != 0)
		return NULL;
	size_t slot = (size_t)hash_name(name) & diff->mask;
	while (diff->slots[slot] != 0) {
		cprof_diff_row_t *row = &diff->rows[diff->slots[slot] - 1];
		if (strcmp(row->name, name) == 0)
			return row;
		slot = (slot + 1) & diff->mask;
	}
	if (diff->count == diff->capacity) {
		size_t bigger = diff->capacity ? diff->capacity * 2 : 64;
		cprof_diff_row_t *rows = realloc(diff->rows, bigger * sizeof *rows);
		if (!rows)
			return NULL;
		diff->rows = rows;
		diff->capacity = bigger;
	}
	char *copy = strdup(name);
	if (!copy)
		return NULL;
	cprof_diff_row_t *row = &diff->rows[diff->count];
	*row = (cprof_diff_row_t){ .name = copy };
	diff->slots[slot] = ++diff->count;
	return row;
}

int cprof_diff_add(cprof_diff_t *diff, const profile_t *profile, int sample_type,
		   cprof_diff_side_t side)
{
	return cprof_diff_add_run(diff, profile, sample_type, side, 1.0);
}

int cprof_diff_add_run(cprof_diff_t *diff, const profile_t *profile, int sample_type,
		       cprof_diff_side_t side, double work)
{
	if (diff->finished || (side == CPROF_DIFF_NEW && diff->new_count > 0) || !(work > 0))
		return -1;
	cprof_function_total_t *totals;
	size_t count;
	int made = diff->label_key
			   ? cprof_profile_label_totals(profile, sample_type, diff->label_key,
							&totals, &count)
			   : cprof_profile_function_totals(profile, sample_type, &totals, &count);
	if (made != 0)
		return -1;
	int64_t total = cprof_profile_total(profile, sample_type);
	int result = 0;
	for (size_t i = 0; i < count; i++) {
		cprof_diff_row_t *row = diff_row(diff, totals[i].name);
		if (!row) {
			result = -1;
			break;
		}
		int64_t value = diff->by_cum ? totals[i].cum : totals[i].flat;
		double share = total != 0 ? 100.0 * (double)value / (double)total : 0.0;
		double per_work = (double)value / work;
		if (side == CPROF_DIFF_NEW) {
			row->new_share = share;
			row->new_value = per_work;
			continue;
		}
		/* Sums until finished; low and high over the runs it is in. */
		if (row->base_seen == 0 || share < row->base_low)
			row->base_low = share;
		if (row->base_seen == 0 || share > row->base_high)
			row->base_high = share;
		if (row->base_seen == 0 || per_work < row->base_value_low)
			row->base_value_low = per_work;
		if (row->base_seen == 0 || per_work > row->base_value_high)
			row->base_value_high = per_work;
		row->base_share += share;
		row->base_value += per_work;
		row->base_seen++;
	}
	cprof_function_totals_free(totals, count);
	if (result != 0)
		return -1;
	double total_per_work = (double)total / work;
	if (side == CPROF_DIFF_NEW) {
		diff->new_total = total_per_work;
		diff->new_count = 1;
	} else {
		if (diff->base_count == 0 || total_per_work < diff->base_total_low)
			diff->base_total_low = total_per_work;
		if (diff->base_count == 0 || total_per_work > diff->base_total_high)
			diff->base_total_high = total_per_work;
		diff->base_total += total_per_work;
		diff->base_count++;
	}
	return 0;
}

static double absolute(double x)
{
	return x < 0 ? -x : x;
}

static int compare_diff_rows(const void *a, const void *b)
{
	const cprof_diff_row_t *x = a, *y = b;
	double mx = absolute(x->new_share - x->base_share);
	double my = absolute(y->new_share - y->base_share);
	if (mx != my)
		return mx > my ? -1 : 1;
	return strcmp(x->name, y->name);
}

void cprof_diff_finish(cprof_diff_t *diff)
{
	if (diff->finished)
		return;
	diff->finished = true;
	if (diff->base_count > 0) {
		double runs = (double)diff->base_count;
		diff->base_total /= runs;
		for (size_t i = 0; i < diff->count; i++) {
			cprof_diff_row_t *row = &diff->rows[i];
			row->base_share /= runs;
			row->base_value /= runs;
			/* Absent from a run: its share there was 0. */
			if (row->base_seen < diff->base_count) {
				if (row->base_low > 0)
					row->base_low = 0;
				if (row->base_high < 0)
					row->base_high = 0;
				if (row->base_value_low > 0)
					row->base_value_low = 0;
				if (row->base_value_high < 0)
					row->base_value_high = 0;
			}
		}
	}
	free(diff->slots); /* names are no longer looked up */
	diff->slots = NULL;
	if (diff->count > 1)
		qsort(diff->rows, diff->count, sizeof *diff->rows, compare_diff_rows);
}

void cprof_diff_release(cprof_diff_t *diff)
{
	for (size_t i = 0; i < diff->count; i++)
		free(diff->rows[i].name);
	free(diff->rows);
	free(diff->slots);
	const char *label_key = diff->label_key;
	cprof_diff_init(diff, diff->by_cum);
	diff->label_key = label_key;
}

double cprof_diff_growth(const cprof_diff_row_t *row)
{
	return row->new_share - row->base_high;
}

bool cprof_diff_row_counts(const cprof_diff_row_t *row, double min_share)
{
	return row->new_share >= min_share || row->base_high >= min_share;
}

bool cprof_diff_row_regressed(const cprof_diff_row_t *row, double threshold,
			      double min_share)
{
	return cprof_diff_row_counts(row, min_share) &&
	       cprof_diff_growth(row) > threshold + 1e-9;
}

double cprof_diff_percent_growth(double now, double before)
{
	if (before == 0)
		return now == 0 ? 0.0 : (now > 0 ? INFINITY : -INFINITY);
	return 100.0 * (now - before) / absolute(before);
}

bool cprof_diff_total_regressed(const cprof_diff_t *diff, double percent)
{
	return diff->base_count > 0 && diff->new_count > 0 &&
	       cprof_diff_percent_growth(diff->new_total, diff->base_total_high) > percent + 1e-9;
}

bool cprof_diff_value_regressed(const cprof_diff_row_t *row, double percent, double min_share)
{
	return cprof_diff_row_counts(row, min_share) &&
	       cprof_diff_percent_growth(row->new_value, row->base_value_high) > percent + 1e-9;
}
