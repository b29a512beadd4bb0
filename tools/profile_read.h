/* profile_read.h — reading pprof profiles for the cprof command and its
 * tests: the bounded, validating reader, look-ups by id, names, units,
 * the per-function totals that `top` prints and the share comparison
 * behind `diff`.
 *
 * A profile is a profile.proto message (preload/profile.proto), gzipped or
 * plain. cprof_profile_read trusts nothing in the file: sizes are capped
 * (see the limits below), the message is unpacked within a memory budget,
 * and every cross-reference is checked before the profile is handed out.
 * Everything else here may therefore index without further checks, but
 * only on a profile that came from cprof_profile_read or
 * cprof_profile_read_buffer (the reader also sorts the mapping, location
 * and function arrays by id, which the look-ups rely on).
 */
#ifndef CPROF_PROFILE_READ_H
#define CPROF_PROFILE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "profile.pb-c.h"

/* ---- limits ---------------------------------------------------------- */

/* The file (or buffer) as given, compressed or not. */
#define CPROF_PROFILE_MAX_INPUT_BYTES ((size_t)256 << 20)
/* The protobuf bytes after gunzip: the gzip bomb cap. */
#define CPROF_PROFILE_MAX_DECOMPRESSED_BYTES ((size_t)256 << 20)
/* Heap the unpacked message may take (protobuf-c allocations, counted
 * with their bookkeeping): small messages on the wire can cost 40 times
 * their size once unpacked. */
#define CPROF_PROFILE_MAX_UNPACKED_BYTES ((size_t)1 << 30)

/* ---- reading --------------------------------------------------------- */

/* Reads, decompresses (when the input starts with the gzip magic), unpacks
 * and validates the profile at `path`. On success returns 0 and a profile
 * to release with cprof_profile_free. On failure returns -1, sets *out to
 * NULL and writes one line without a newline to err, "<path>: <problem>",
 * for example "prof.pb.gz: not gzip or protobuf: bad magic 0x23 0x21". */
int cprof_profile_read(const char *path, Perftools__Profiles__Profile **out,
		       char *err, size_t errlen);

/* The same from memory; `name` stands for the file in messages. The
 * buffer is not modified and may be released after the call. */
int cprof_profile_read_buffer(const void *data, size_t length, const char *name,
			      Perftools__Profiles__Profile **out,
			      char *err, size_t errlen);

/* The three caps, for callers (tests) that want other values than the
 * defaults above; a 0 field means that default. */
typedef struct cprof_profile_limits {
	size_t max_input_bytes;
	size_t max_decompressed_bytes;
	size_t max_unpacked_bytes;
} cprof_profile_limits_t;

int cprof_profile_read_buffer_with_limits(const void *data, size_t length,
					  const char *name,
					  const cprof_profile_limits_t *limits,
					  Perftools__Profiles__Profile **out,
					  char *err, size_t errlen);

/* Releases a profile from the readers; NULL is allowed. */
void cprof_profile_free(Perftools__Profiles__Profile *profile);

/* ---- look-ups -------------------------------------------------------- */

/* The string at `index` in the string table, "" when out of range. */
const char *cprof_profile_string(const Perftools__Profiles__Profile *profile,
				 int64_t index);

/* The index of the sample type named `name` ("cpu", "samples",
 * "inuse_space", ...), or -1 when there is none. */
int cprof_profile_sample_type_index(const Perftools__Profiles__Profile *profile,
				    const char *name);

/* The sample type pprof shows when none is asked for: the one named by
 * default_sample_type when set and present, else the last one. -1 when the
 * profile has no sample types. */
int cprof_profile_default_sample_type(const Perftools__Profiles__Profile *profile);

/* What a command's -t option selects: NULL means the default sample type;
 * otherwise a sample type name, or failing that a decimal index. -1 when
 * nothing matches. */
int cprof_profile_select_sample_type(const Perftools__Profiles__Profile *profile,
				     const char *name_or_index);

/* Entries by id (binary search; O(1) when ids are 1..n), NULL when absent.
 * Id 0 is never present. */
const Perftools__Profiles__Location *
cprof_profile_location(const Perftools__Profiles__Profile *profile, uint64_t id);
const Perftools__Profiles__Function *
cprof_profile_function(const Perftools__Profiles__Profile *profile, uint64_t id);
const Perftools__Profiles__Mapping *
cprof_profile_mapping(const Perftools__Profiles__Profile *profile, uint64_t id);

/* ---- names ----------------------------------------------------------- */

/* A function's name; its system name when the name is empty; "" when both
 * are. Never NULL. */
const char *cprof_profile_function_name(const Perftools__Profiles__Profile *profile,
					const Perftools__Profiles__Function *function);

/* The name of a location known only by its address: "0x<address>", or
 * "<mapping file basename> 0x<address>" when its mapping has a file name,
 * e.g. "libc.so.6 0x29d90". Always NUL-terminated (truncated if need be);
 * PATH_MAX + 64 bytes always suffice (the reader refuses longer mapping
 * file names). */
void cprof_profile_address_name(const Perftools__Profiles__Profile *profile,
				const Perftools__Profiles__Location *location,
				char *buffer, size_t size);

/* Writes s to `stream` with control characters (tab and newline included)
 * and DEL as \xNN, so that one name stays one field on one line. */
void cprof_print_escaped(FILE *stream, const char *s);

/* ---- values and units ------------------------------------------------ */

/* `value` in `unit` as pprof shows it: time units scaled to ns, us, ms, s
 * or hrs ("1.20s", "340ms"), memory units to B, kB, MB, GB, TB, PB with
 * 1024 steps ("1.50MB"), both with two decimals and a trailing ".00"
 * dropped; anything else (count, samples, ...) as the plain integer.
 * Zero is "0". */
void cprof_format_value(int64_t value, const char *unit, char *buffer, size_t size);

/* value/total as a percentage with two decimals ("75.01%", "-3.50%"),
 * "100%" when it rounds to 100, "0.00%" when total is 0. */
void cprof_format_percent(int64_t value, int64_t total, char *buffer, size_t size);

/* a + b, clamped to the int64_t range. */
int64_t cprof_add_saturating(int64_t a, int64_t b);

/* The sum of |value| over all samples for one sample type (saturating),
 * which is what pprof calls the total. */
int64_t cprof_profile_total(const Perftools__Profiles__Profile *profile,
			    int sample_type);

/* ---- per-function totals (top, diff) --------------------------------- */

/* One row per function name:
 *   flat: the values of the samples whose leaf location's innermost line
 *         is this function (or, for a leaf location without lines, whose
 *         address name is this name);
 *   cum:  the values of the samples with this name anywhere in the stack,
 *         inlined lines included, counted once per sample even when the
 *         stack recurses.
 * Functions with different ids but the same name share one row. A line
 * whose function has neither name nor system name counts under its
 * location's address name. Rows whose flat and cum are both 0 are left
 * out. */
typedef struct cprof_function_total {
	char *name; /* owned by the row array */
	int64_t flat;
	int64_t cum;
} cprof_function_total_t;

/* Computes the rows for sample type `sample_type` (an index) in no
 * particular order. Returns 0, or -1 when out of memory or the index is
 * out of range. */
int cprof_profile_function_totals(const Perftools__Profiles__Profile *profile,
				  int sample_type,
				  cprof_function_total_t **rows, size_t *count);

typedef enum cprof_sort_order {
	CPROF_SORT_BY_FLAT, /* |flat| descending, then name */
	CPROF_SORT_BY_CUM,  /* |cum| descending, then name */
} cprof_sort_order_t;

void cprof_function_totals_sort(cprof_function_total_t *rows, size_t count,
				cprof_sort_order_t order);

/* The same rows by the value of a string label instead of by function
 * (`--by program`: key "program"): flat and cum are both the sum of the
 * values of the samples carrying label_key=value; samples without the
 * label count under "(no <key>)". Returns 0, or -1 when out of memory or
 * the index is out of range. */
int cprof_profile_label_totals(const Perftools__Profiles__Profile *profile,
			       int sample_type, const char *label_key,
			       cprof_function_total_t **rows, size_t *count);
void cprof_function_totals_free(cprof_function_total_t *rows, size_t count);

/* ---- comparing profiles (diff) --------------------------------------- */

/* `cprof diff` compares profiles by function as shares of each profile's
 * own total (in percent), so that runs of different length compare
 * fairly. Any number of BASE profiles (repeated runs of the same thing)
 * set a noise band per function: the lowest and highest share it had in
 * them, 0 in a run where it did not appear. One NEW profile is compared
 * against them.
 *
 *   cprof_diff_t diff;
 *   cprof_diff_init(&diff, by_cum);
 *   cprof_diff_add(&diff, new, type, CPROF_DIFF_NEW);
 *   for each BASE: cprof_diff_add(&diff, base, type, CPROF_DIFF_BASE);
 *   cprof_diff_finish(&diff);            rows sorted, means taken
 *   ... diff.rows[0 .. diff.count) ...
 *   cprof_diff_release(&diff);
 *
 * Profiles may be freed as soon as they are added: rows own their names.
 * A profile whose total is 0 gives every function a share of 0.
 *
 * Totals and values are kept too, with their band over the BASE runs
 * (lowest, highest), for the totals gate and the per-function value gate;
 * cprof_diff_add_run divides a run's totals and values by its work. With
 * label_key set (after init), rows are the label's values (`--by
 * program`) instead of functions. */

typedef enum cprof_diff_side { CPROF_DIFF_BASE, CPROF_DIFF_NEW } cprof_diff_side_t;

typedef struct cprof_diff_row {
	char *name;
	double base_share;  /* mean over the BASE profiles, percent */
	double base_low;    /* lowest share in a BASE profile (0 where absent) */
	double base_high;   /* highest share in a BASE profile */
	double new_share;   /* percent of NEW's total */
	double base_value;  /* mean value over the BASE profiles, in the sample
			     * type's unit (per unit of work when runs have one) */
	double base_value_low, base_value_high; /* over the BASE runs, 0 where absent */
	double new_value;
	size_t base_seen;   /* BASE profiles in which the function has a value */
} cprof_diff_row_t;

typedef struct cprof_diff {
	bool by_cum;          /* compare cum values; flat by default */
	bool finished;
	size_t base_count;    /* BASE profiles added */
	size_t new_count;     /* 0 or 1 */
	const char *label_key; /* rows by this label's values, not by function */
	double base_total;    /* mean total of the BASE profiles (sum until finished) */
	double base_total_low, base_total_high; /* lowest and highest BASE total */
	double new_total;
	cprof_diff_row_t *rows;
	size_t count, capacity;
	size_t *slots;        /* name -> row + 1, open addressing */
	size_t mask;
} cprof_diff_t;

void cprof_diff_init(cprof_diff_t *diff, bool by_cum);

/* Adds one profile's rows for `sample_type` (an index valid in it).
 * BASE and NEW profiles may come in any order, NEW once. Returns 0; -1
 * when out of memory, the index is out of range, NEW is added twice or
 * the diff is finished. */
int cprof_diff_add(cprof_diff_t *diff, const Perftools__Profiles__Profile *profile,
		   int sample_type, cprof_diff_side_t side);

/* The same for a run that did `work` units of work (iterations, requests:
 * `--per`): its values and total are divided by it before they are
 * compared (shares do not change). work must be > 0; 1 is plain add. */
int cprof_diff_add_run(cprof_diff_t *diff, const Perftools__Profiles__Profile *profile,
		       int sample_type, cprof_diff_side_t side, double work);

/* Takes the means and sorts the rows by |new_share - base_share|
 * descending, then by name. Call once, after the last add. */
void cprof_diff_finish(cprof_diff_t *diff);

/* Releases the rows; the struct may be initialised again. */
void cprof_diff_release(cprof_diff_t *diff);

/* How far NEW's share rose above the band: new_share - base_high, in
 * points (negative when NEW is inside or below it). */
double cprof_diff_growth(const cprof_diff_row_t *row);

/* Whether a row counts at all: its share reaches `min_share` (percent) in
 * NEW or in some BASE profile. */
bool cprof_diff_row_counts(const cprof_diff_row_t *row, double min_share);

/* Whether a row is a regression: it counts, and its growth above the band
 * exceeds `threshold` points (with 1e-9 of slack for rounding). */
bool cprof_diff_row_regressed(const cprof_diff_row_t *row, double threshold,
			      double min_share);

/* Growth in percent of `now` over `before` (the top of the BASE band):
 * 100 * (now - before) / before; INFINITY when before is 0 and now is
 * not, 0 when both are. */
double cprof_diff_percent_growth(double now, double before);

/* The totals gate: NEW's total grew more than `percent` above the
 * highest BASE total (with 1e-9 of slack). */
bool cprof_diff_total_regressed(const cprof_diff_t *diff, double percent);

/* The per-function value gate (`--max-growth`): the row counts and its
 * NEW value grew more than `percent` above its highest BASE value. */
bool cprof_diff_value_regressed(const cprof_diff_row_t *row, double percent,
				double min_share);

#endif
