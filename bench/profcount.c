/* profcount.c — how many CPU samples a profile file holds, for bench/run.sh.
 *
 *   profcount FILE...
 *
 * Reads each FILE as one of:
 *  - a pprof profile (profile.proto, gzipped or not), as libcprof writes:
 *    the sum over samples of the value whose sample_type is "samples";
 *  - a gperftools CPU profile (the legacy binary format, 64-bit words):
 *    the sum of the record counts.
 * Prints the largest count among the files that have one, so several
 * cumulative dumps of one process are not added up. Exits 1 when no file
 * held a count. A self-contained decoder (zlib only) so the benchmark needs
 * no pprof tool and no Go toolchain at run time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
	const uint8_t *p, *end;
} buf_t;

static bool read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "profcount: %s: %s\n", path, strerror(errno));
		return false;
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *d = malloc(cap);
	size_t got;
	while (d && (got = fread(d + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			d = realloc(d, cap *= 2);
	}
	fclose(f);
	if (!d)
		return false;
	*data = d;
	*len = n;
	return true;
}

static bool gunzip(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	z_stream z = {0};
	if (inflateInit2(&z, 15 + 32) != Z_OK) /* +32: gzip or zlib header */
		return false;
	size_t cap = in_len * 4 + 4096, n = 0;
	uint8_t *d = malloc(cap);
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)in_len;
	int rc = Z_OK;
	while (d && rc == Z_OK) {
		if (n == cap)
			d = realloc(d, cap *= 2);
		if (!d)
			break;
		z.next_out = d + n;
		z.avail_out = (uInt)(cap - n);
		rc = inflate(&z, Z_NO_FLUSH);
		n = cap - z.avail_out;
	}
	inflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(d);
		return false;
	}
	*out = d;
	*out_len = n;
	return true;
}

static bool varint(buf_t *b, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && b->p < b->end; shift += 7) {
		uint8_t c = *b->p++;
		*v |= (uint64_t)(c & 0x7F) << shift;
		if (!(c & 0x80))
			return true;
	}
	return false;
}

/* Next field of a message: its number, wire type, and either its varint
 * value or its bytes (for length-delimited fields). */
static bool field(buf_t *b, uint64_t *num, int *wt, uint64_t *v, buf_t *sub)
{
	uint64_t key;
	if (!varint(b, &key))
		return false;
	*num = key >> 3;
	*wt = (int)(key & 7);
	switch (*wt) {
	case 0:
		return varint(b, v);
	case 1:
		if (b->end - b->p < 8)
			return false;
		b->p += 8;
		return true;
	case 2:
		if (!varint(b, v) || (uint64_t)(b->end - b->p) < *v)
			return false;
		sub->p = b->p;
		sub->end = b->p + *v;
		b->p += *v;
		return true;
	case 5:
		if (b->end - b->p < 4)
			return false;
		b->p += 4;
		return true;
	default:
		return false;
	}
}

/* Index of the string "samples" in the string table, or -1. */
static int64_t samples_string(buf_t prof)
{
	uint64_t num, v;
	int wt;
	buf_t sub;
	int64_t idx = 0;
	while (prof.p < prof.end) {
		if (!field(&prof, &num, &wt, &v, &sub))
			return -1;
		if (num == 6 && wt == 2) {
			if (sub.end - sub.p == 7 && memcmp(sub.p, "samples", 7) == 0)
				return idx;
			idx++;
		}
	}
	return -1;
}

static bool pprof_count(const uint8_t *data, size_t len, int64_t *count)
{
	buf_t prof = {data, data + len}, b, sub, sub2;
	uint64_t num, v;
	int wt;
	int64_t str = samples_string(prof);
	if (str < 0)
		return false;

	/* Which value of a sample is "samples". */
	int64_t which = -1, k = 0;
	for (b = prof; b.p < b.end;) {
		if (!field(&b, &num, &wt, &v, &sub))
			return false;
		if (num != 1 || wt != 2)
			continue;
		while (sub.p < sub.end) {
			uint64_t n2, v2;
			int wt2;
			if (!field(&sub, &n2, &wt2, &v2, &sub2))
				return false;
			if (n2 == 1 && wt2 == 0 && (int64_t)v2 == str && which < 0)
				which = k;
		}
		k++;
	}
	if (which < 0)
		return false;

	int64_t total = 0;
	for (b = prof; b.p < b.end;) {
		if (!field(&b, &num, &wt, &v, &sub))
			return false;
		if (num != 2 || wt != 2)
			continue;
		int64_t i = 0; /* value index within this sample */
		while (sub.p < sub.end) {
			uint64_t n2, v2;
			int wt2;
			if (!field(&sub, &n2, &wt2, &v2, &sub2))
				return false;
			if (n2 != 2)
				continue;
			if (wt2 == 0) { /* unpacked */
				if (i++ == which)
					total += (int64_t)v2;
			} else if (wt2 == 2) { /* packed */
				while (sub2.p < sub2.end) {
					if (!varint(&sub2, &v2))
						return false;
					if (i++ == which)
						total += (int64_t)v2;
				}
			}
		}
	}
	*count = total;
	return true;
}

/* gperftools: header {0, 3, 0, period_us, 0}, then records
 * {count, npcs, pc...}, ending with {0, 1, 0}. */
static bool gperf_count(const uint8_t *data, size_t len, int64_t *count)
{
	size_t nw = len / 8;
	const uint64_t *w = (const void *)data;
	if (nw < 5 || w[0] != 0 || w[1] != 3 || w[2] != 0)
		return false;
	int64_t total = 0;
	for (size_t i = 5; i + 2 <= nw;) {
		uint64_t c = w[i], npcs = w[i + 1];
		if (c == 0 && npcs == 1) { /* trailer */
			*count = total;
			return true;
		}
		if (npcs > nw - i - 2)
			return false;
		total += (int64_t)c;
		i += 2 + npcs;
	}
	return false;
}

int main(int argc, char **argv)
{
	int64_t best = -1;
	if (argc < 2) {
		fprintf(stderr, "usage: profcount FILE...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		uint8_t *data, *raw = NULL;
		size_t len, raw_len;
		int64_t c;
		if (!read_file(argv[i], &data, &len))
			continue;
		if (gperf_count(data, len, &c)) {
			if (c > best)
				best = c;
		} else if (len >= 2 && data[0] == 0x1F && data[1] == 0x8B) {
			if (gunzip(data, len, &raw, &raw_len) && pprof_count(raw, raw_len, &c) && c > best)
				best = c;
		} else if (pprof_count(data, len, &c) && c > best) {
			best = c;
		}
		free(raw);
		free(data);
	}
	if (best < 0)
		return 1;
	printf("%" PRId64 "\n", best);
	return 0;
}
