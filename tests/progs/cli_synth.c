/* cli_synth — writes a small pprof profile.proto (plain protobuf, not
 * gzipped) from a list of stacks, for the `cprof diff` and bad-input tests.
 * The protobuf is encoded by hand (this directory builds without
 * protobuf-c), which also makes it an independent writer for our reader.
 *
 * Usage: cli_synth [-t TYPE/UNIT] [--dangling] OUT STACK=VALUE...
 *   STACK    function names separated by ';', leaf first: "parse;main=30"
 *   -t       the one sample type (default cpu/nanoseconds)
 *   --dangling  one more sample refers to a location that does not exist
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buffer {
	uint8_t *data;
	size_t length, capacity;
} buffer_t;

static void put_byte(buffer_t *b, uint8_t byte)
{
	if (b->length == b->capacity) {
		b->capacity = b->capacity ? b->capacity * 2 : 256;
		b->data = realloc(b->data, b->capacity);
		if (!b->data) {
			perror("realloc");
			exit(1);
		}
	}
	b->data[b->length++] = byte;
}

static void put_varint(buffer_t *b, uint64_t value)
{
	while (value >= 0x80) {
		put_byte(b, (uint8_t)(value | 0x80));
		value >>= 7;
	}
	put_byte(b, (uint8_t)value);
}

static void put_bytes(buffer_t *b, const void *data, size_t length)
{
	for (size_t i = 0; i < length; i++)
		put_byte(b, ((const uint8_t *)data)[i]);
}

static void put_key(buffer_t *b, unsigned field, unsigned wire_type)
{
	put_varint(b, (uint64_t)field << 3 | wire_type);
}

static void put_uint(buffer_t *b, unsigned field, uint64_t value)
{
	put_key(b, field, 0);
	put_varint(b, value);
}

/* A length-delimited field: `inner` is copied and reset. */
static void put_message(buffer_t *b, unsigned field, buffer_t *inner)
{
	put_key(b, field, 2);
	put_varint(b, inner->length);
	put_bytes(b, inner->data, inner->length);
	inner->length = 0;
}

#define MAX_NAMES 1024

static const char *names[MAX_NAMES]; /* string table from index 1 */
static size_t name_count = 1;

static uint64_t string_index(const char *s)
{
	for (size_t i = 1; i < name_count; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	if (name_count == MAX_NAMES) {
		fprintf(stderr, "cli_synth: too many names\n");
		exit(2);
	}
	names[name_count] = s;
	return name_count++;
}

int main(int argc, char **argv)
{
	const char *type = "cpu/nanoseconds";
	int dangling = 0, arg = 1;
	for (; arg < argc && argv[arg][0] == '-'; arg++) {
		if (strcmp(argv[arg], "-t") == 0 && arg + 1 < argc)
			type = argv[++arg];
		else if (strcmp(argv[arg], "--dangling") == 0)
			dangling = 1;
		else
			break;
	}
	if (argc - arg < 2 || !strchr(type, '/')) {
		fprintf(stderr, "usage: cli_synth [-t TYPE/UNIT] [--dangling] OUT STACK=VALUE...\n");
		return 2;
	}
	const char *out = argv[arg++];
	char *type_name = strdup(type);
	char *unit = strchr(type_name, '/');
	*unit++ = '\0';

	buffer_t profile = { 0 }, inner = { 0 }, packed = { 0 }, line = { 0 };
	uint64_t type_index = string_index(type_name), unit_index = string_index(unit);
	put_uint(&inner, 1, type_index);
	put_uint(&inner, 2, unit_index);
	put_message(&profile, 1, &inner);

	/* Functions and locations: one each per distinct name, id = string index. */
	uint64_t used[MAX_NAMES] = { 0 };
	for (int i = arg; i < argc; i++) {
		char *spec = strdup(argv[i]);
		char *equals = strrchr(spec, '=');
		if (!equals) {
			fprintf(stderr, "cli_synth: %s: want STACK=VALUE\n", argv[i]);
			return 2;
		}
		*equals = '\0';
		long long value = strtoll(equals + 1, NULL, 10);
		for (char *frame = strtok(spec, ";"); frame; frame = strtok(NULL, ";")) {
			uint64_t id = string_index(frame);
			put_varint(&packed, id);
			used[id] = 1;
		}
		put_key(&inner, 1, 2);
		put_varint(&inner, packed.length);
		put_bytes(&inner, packed.data, packed.length);
		packed.length = 0;
		put_varint(&packed, (uint64_t)value);
		put_key(&inner, 2, 2);
		put_varint(&inner, packed.length);
		put_bytes(&inner, packed.data, packed.length);
		packed.length = 0;
		put_message(&profile, 2, &inner);
	}
	if (dangling) {
		put_key(&inner, 1, 2);
		put_varint(&inner, 2);
		put_varint(&inner, 999);
		put_key(&inner, 2, 2);
		put_varint(&inner, 1);
		put_varint(&inner, 1);
		put_message(&profile, 2, &inner);
	}
	for (size_t id = 1; id < name_count; id++) {
		if (!used[id])
			continue;
		put_uint(&line, 1, id);                 /* function_id */
		put_uint(&line, 2, 10 + id);            /* line */
		put_uint(&inner, 1, id);                /* location id */
		put_uint(&inner, 3, 0x401000 + 16 * id); /* address */
		put_message(&inner, 4, &line);
		put_message(&profile, 4, &inner);
		put_uint(&inner, 1, id); /* function id */
		put_uint(&inner, 2, id); /* name */
		put_uint(&inner, 3, id); /* system_name */
		put_message(&profile, 5, &inner);
	}
	put_key(&profile, 6, 2); /* string_table[0] = "" */
	put_varint(&profile, 0);
	for (size_t i = 1; i < name_count; i++) {
		put_key(&profile, 6, 2);
		put_varint(&profile, strlen(names[i]));
		put_bytes(&profile, names[i], strlen(names[i]));
	}
	put_uint(&profile, 14, type_index); /* default_sample_type */

	FILE *file = fopen(out, "wb");
	if (!file || fwrite(profile.data, 1, profile.length, file) != profile.length ||
	    fclose(file) != 0) {
		perror(out);
		return 1;
	}
	return 0;
}
