/* flame.c — `cprof flame`: a flame graph as one self-contained SVG file.
 *
 *   cprof flame PATH... [--base PATH...] -o OUT.svg [-t TYPE] [-k KIND]
 *               [--title TEXT] [--width PX] [--tag KEY=VALUE]...
 *
 * The PATHs before --base are merged into one profile (profile_merge.h),
 * as `cprof top` merges them. Each stack becomes a column of frames, the
 * root ("all") at the bottom and the leaf on top; a frame's width is its
 * value (the sum of the samples through that path) over the total, so
 * widths add up exactly as `cprof top`'s cum values do for a function
 * that appears once per stack. Siblings are in name order (as
 * flamegraph.pl orders them), so the picture of a profile does not change
 * between runs of the same code. Colours come from a hash of the function
 * name, in the warm palette of flamegraph.pl: the same function has the
 * same colour in every graph. Hovering a frame shows its <title>: the full
 * name, value and share of the total. Frames narrower than 0.1 px are left
 * out (with their children), which bounds the file for huge profiles. No
 * script, no font or style sheet from the network: any browser, or a CI
 * artifact viewer, shows it as it is.
 *
 * With --base, each PATH after it is one BASE run (a file, or a directory
 * merged into one run), as for `cprof diff`, and the BASE value of a frame
 * is its mean over the runs. Widths stay NEW's; the colour says how the
 * frame's value changed: red when it grew, blue when it shrank, the deeper
 * the larger the change relative to BASE (full at +-50% and beyond; a
 * frame BASE does not have is full red), light grey when unchanged.
 * Frames only BASE has are not drawn (their time went elsewhere or away).
 *
 * Exit status: 0 written; 2 a usage error, unusable input (as for `diff`:
 * one line naming the file), a profile with nothing to draw (total 0), or
 * OUT cannot be written. OUT is written through a temporary file renamed
 * into place.
 */
#include "cprof_command.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLAME_FRAME_HEIGHT 16
#define FLAME_TOP 34    /* room for the title */
#define FLAME_BOTTOM 8
#define FLAME_MARGIN 10 /* left and right */
#define FLAME_MIN_WIDTH_PX 0.1
#define FLAME_CHAR_PX 6.6 /* average width of an 11px Verdana character */

/* ---- the tree of stacks ---------------------------------------------------- */

typedef struct flame_node {
	uint32_t name;     /* index into the names */
	uint32_t parent;
	uint32_t first_child, next_sibling; /* UINT32_MAX: none */
	double value;      /* NEW */
	double base;       /* BASE mean */
} flame_node_t;

typedef struct flame {
	flame_node_t *nodes;
	size_t count, capacity;
	/* (parent, name) -> node + 1 */
	uint64_t *child_keys;
	uint32_t *child_slots;
	size_t child_mask;
	/* names */
	char **names;
	size_t name_count, name_capacity;
	uint32_t *name_slots; /* name + 1 */
	size_t name_mask;
} flame_t;

static uint64_t hash_string(const char *s)
{
	uint64_t hash = 14695981039346656037ull;
	for (; *s; s++) {
		hash ^= (unsigned char)*s;
		hash *= 1099511628211ull;
	}
	return hash;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* The index of `name`, added when new; UINT32_MAX when out of memory. */
static uint32_t flame_name(flame_t *flame, const char *name)
{
	if (flame->name_count * 2 + 2 > flame->name_mask + 1 || !flame->name_slots) {
		size_t size = flame->name_slots ? (flame->name_mask + 1) * 2 : 1024;
		uint32_t *slots = calloc(size, sizeof *slots);
		if (!slots)
			return UINT32_MAX;
		for (size_t i = 0; i < flame->name_count; i++) {
			size_t slot = (size_t)hash_string(flame->names[i]) & (size - 1);
			while (slots[slot])
				slot = (slot + 1) & (size - 1);
			slots[slot] = (uint32_t)i + 1;
		}
		free(flame->name_slots);
		flame->name_slots = slots;
		flame->name_mask = size - 1;
	}
	size_t slot = (size_t)hash_string(name) & flame->name_mask;
	while (flame->name_slots[slot]) {
		uint32_t i = flame->name_slots[slot] - 1;
		if (strcmp(flame->names[i], name) == 0)
			return i;
		slot = (slot + 1) & flame->name_mask;
	}
	if (flame->name_count == flame->name_capacity) {
		size_t bigger = flame->name_capacity ? flame->name_capacity * 2 : 1024;
		char **grown = realloc(flame->names, bigger * sizeof *grown);
		if (!grown)
			return UINT32_MAX;
		flame->names = grown;
		flame->name_capacity = bigger;
	}
	char *copy = strdup(name);
	if (!copy || flame->name_count >= UINT32_MAX - 1) {
		free(copy);
		return UINT32_MAX;
	}
	flame->names[flame->name_count] = copy;
	flame->name_slots[slot] = (uint32_t)flame->name_count + 1;
	return (uint32_t)flame->name_count++;
}

static int flame_grow_children(flame_t *flame)
{
	if (flame->child_slots && flame->count * 2 < flame->child_mask + 1)
		return 0;
	size_t size = flame->child_slots ? (flame->child_mask + 1) * 2 : 4096;
	uint64_t *keys = calloc(size, sizeof *keys);
	uint32_t *slots = calloc(size, sizeof *slots);
	if (!keys || !slots) {
		free(keys);
		free(slots);
		return -1;
	}
	if (flame->child_slots)
		for (size_t i = 0; i <= flame->child_mask; i++) {
			if (!flame->child_slots[i])
				continue;
			size_t slot = (size_t)mix(flame->child_keys[i]) & (size - 1);
			while (slots[slot])
				slot = (slot + 1) & (size - 1);
			slots[slot] = flame->child_slots[i];
			keys[slot] = flame->child_keys[i];
		}
	free(flame->child_keys);
	free(flame->child_slots);
	flame->child_keys = keys;
	flame->child_slots = slots;
	flame->child_mask = size - 1;
	return 0;
}

/* The child of `parent` named `name`, made when new; UINT32_MAX when out
 * of memory. */
static uint32_t flame_child(flame_t *flame, uint32_t parent, uint32_t name)
{
	if (flame_grow_children(flame) != 0)
		return UINT32_MAX;
	uint64_t key = (uint64_t)parent << 32 | name;
	size_t slot = (size_t)mix(key) & flame->child_mask;
	while (flame->child_slots[slot]) {
		if (flame->child_keys[slot] == key)
			return flame->child_slots[slot] - 1;
		slot = (slot + 1) & flame->child_mask;
	}
	if (flame->count == flame->capacity) {
		size_t bigger = flame->capacity ? flame->capacity * 2 : 4096;
		flame_node_t *grown = realloc(flame->nodes, bigger * sizeof *grown);
		if (!grown)
			return UINT32_MAX;
		flame->nodes = grown;
		flame->capacity = bigger;
	}
	if (flame->count >= UINT32_MAX - 1)
		return UINT32_MAX;
	uint32_t node = (uint32_t)flame->count++;
	flame->nodes[node] = (flame_node_t){ name, parent, UINT32_MAX, UINT32_MAX, 0, 0 };
	flame->child_keys[slot] = key;
	flame->child_slots[slot] = node + 1;
	return node;
}

static int flame_init(flame_t *flame)
{
	memset(flame, 0, sizeof *flame);
	uint32_t all = flame_name(flame, "all");
	if (all == UINT32_MAX)
		return -1;
	flame->nodes = calloc(1024, sizeof *flame->nodes);
	if (!flame->nodes)
		return -1;
	flame->capacity = 1024;
	flame->count = 1;
	flame->nodes[0] = (flame_node_t){ all, UINT32_MAX, UINT32_MAX, UINT32_MAX, 0, 0 };
	return 0;
}

static void flame_free(flame_t *flame)
{
	for (size_t i = 0; i < flame->name_count; i++)
		free(flame->names[i]);
	free(flame->names);
	free(flame->name_slots);
	free(flame->nodes);
	free(flame->child_keys);
	free(flame->child_slots);
}

/* Adds every sample of `profile` (sample type `type`) to the tree: to the
 * NEW values, or to BASE with `weight` (1 / the number of BASE runs).
 * Returns 0 or -1 when out of memory. */
static int flame_add(flame_t *flame, const Perftools__Profiles__Profile *profile, int type,
		     bool base, double weight)
{
	/* Each location's frames, outermost (caller) first: its lines are
	 * innermost first, inlined into the last. */
	size_t total_lines = 0;
	for (size_t i = 0; i < profile->n_location; i++)
		total_lines += profile->location[i]->n_line ? profile->location[i]->n_line : 1;
	size_t *start = calloc(profile->n_location + 1, sizeof *start);
	uint32_t *names = calloc(total_lines + 1, sizeof *names);
	int result = -1;
	if (!start || !names)
		goto done;
	size_t filled = 0;
	for (size_t i = 0; i < profile->n_location; i++) {
		const Perftools__Profiles__Location *location = profile->location[i];
		start[i] = filled;
		if (location->n_line == 0) {
			char address[PATH_MAX + 64];
			cprof_profile_address_name(profile, location, address, sizeof address);
			if ((names[filled++] = flame_name(flame, address)) == UINT32_MAX)
				goto done;
			continue;
		}
		for (size_t j = location->n_line; j-- > 0;) {
			const Perftools__Profiles__Function *function =
				cprof_profile_function(profile, location->line[j]->function_id);
			const char *name = cprof_profile_function_name(profile, function);
			char address[PATH_MAX + 64];
			if (!name[0]) {
				cprof_profile_address_name(profile, location, address, sizeof address);
				name = address;
			}
			if ((names[filled++] = flame_name(flame, name)) == UINT32_MAX)
				goto done;
		}
	}
	start[profile->n_location] = filled;

	for (size_t i = 0; i < profile->n_sample; i++) {
		const Perftools__Profiles__Sample *sample = profile->sample[i];
		int64_t raw = sample->value[type];
		if (raw <= 0)
			continue; /* nothing to draw a width with */
		double value = base ? (double)raw * weight : (double)raw;
		uint32_t node = 0;
		if (base)
			flame->nodes[0].base += value;
		else
			flame->nodes[0].value += value;
		for (size_t j = sample->n_location_id; j-- > 0;) {
			const Perftools__Profiles__Location *location =
				cprof_profile_location(profile, sample->location_id[j]);
			/* The reader sorts locations by id: its index. */
			size_t low = 0, high = profile->n_location;
			while (low < high) {
				size_t middle = low + (high - low) / 2;
				if (profile->location[middle]->id < location->id)
					low = middle + 1;
				else
					high = middle;
			}
			for (size_t k = start[low]; k < start[low + 1]; k++) {
				node = flame_child(flame, node, names[k]);
				if (node == UINT32_MAX)
					goto done;
				if (base)
					flame->nodes[node].base += value;
				else
					flame->nodes[node].value += value;
			}
		}
	}
	result = 0;
done:
	free(start);
	free(names);
	return result;
}

/* ---- layout and drawing ------------------------------------------------------ */

static const flame_t *sorting_flame;

static int compare_children(const void *a, const void *b)
{
	const flame_t *flame = sorting_flame;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return strcmp(flame->names[flame->nodes[x].name], flame->names[flame->nodes[y].name]);
}

/* Links every node's children in name order. */
static int flame_link(flame_t *flame)
{
	size_t *counts = calloc(flame->count + 1, sizeof *counts);
	size_t *offsets = calloc(flame->count + 2, sizeof *offsets);
	uint32_t *order = calloc(flame->count + 1, sizeof *order);
	if (!counts || !offsets || !order) {
		free(counts);
		free(offsets);
		free(order);
		return -1;
	}
	for (size_t i = 1; i < flame->count; i++)
		counts[flame->nodes[i].parent]++;
	for (size_t i = 0; i < flame->count; i++)
		offsets[i + 1] = offsets[i] + counts[i];
	memset(counts, 0, (flame->count + 1) * sizeof *counts);
	for (size_t i = 1; i < flame->count; i++) {
		uint32_t parent = flame->nodes[i].parent;
		order[offsets[parent] + counts[parent]++] = (uint32_t)i;
	}
	sorting_flame = flame;
	for (size_t i = 0; i < flame->count; i++) {
		size_t n = offsets[i + 1] - offsets[i];
		uint32_t *children = order + offsets[i];
		if (n > 1)
			qsort(children, n, sizeof *children, compare_children);
		flame->nodes[i].first_child = n ? children[0] : UINT32_MAX;
		for (size_t j = 0; j < n; j++)
			flame->nodes[children[j]].next_sibling = j + 1 < n ? children[j + 1] : UINT32_MAX;
	}
	free(counts);
	free(offsets);
	free(order);
	return 0;
}

/* Writes s as XML character data: & < > " ' escaped, control characters
 * and bytes that are not UTF-8 as '?', at most `limit` characters (then
 * ".."). */
static void put_xml(FILE *out, const char *s, size_t limit)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t shown = 0;
	size_t length = 0;
	for (const unsigned char *q = p; *q; q++)
		length += (*q & 0xc0) != 0x80;
	bool cut = length > limit;
	size_t keep = cut ? (limit > 2 ? limit - 2 : 0) : limit;
	while (*p && shown < keep) {
		unsigned char c = *p;
		size_t extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
					 : (c & 0xf8) == 0xf0 ? 3 : SIZE_MAX;
		bool valid = extra != SIZE_MAX && !(c >= 0xc0 && c < 0xc2) && c <= 0xf4;
		for (size_t k = 1; valid && k <= extra; k++)
			valid = (p[k] & 0xc0) == 0x80;
		/* Overlong three-byte forms and surrogates are not allowed in XML. */
		if (valid && extra == 2 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
			valid = false;
		if (valid && extra == 3 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
			valid = false;
		if (!valid) {
			fputc('?', out);
			p++;
		} else if (extra > 0) {
			fwrite(p, 1, extra + 1, out);
			p += extra + 1;
		} else {
			if (c < 0x20 || c == 0x7f)
				fputc('?', out);
			else if (c == '&')
				fputs("&amp;", out);
			else if (c == '<')
				fputs("&lt;", out);
			else if (c == '>')
				fputs("&gt;", out);
			else if (c == '"')
				fputs("&quot;", out);
			else if (c == '\'')
				fputs("&apos;", out);
			else
				fputc(c, out);
			p++;
		}
		shown++;
	}
	if (cut)
		fputs("..", out);
}

typedef struct rgb {
	int r, g, b;
} rgb_t;

/* flamegraph.pl's "hot" palette, from a hash of the name. */
static rgb_t function_colour(const char *name)
{
	uint64_t h = mix(hash_string(name));
	double v1 = (double)(h & 0xffff) / 65535.0;
	double v2 = (double)((h >> 16) & 0xffff) / 65535.0;
	double v3 = (double)((h >> 32) & 0xffff) / 65535.0;
	return (rgb_t){ 205 + (int)(50 * v3), (int)(230 * v1), (int)(55 * v2) };
}

/* Grey when unchanged; red for growth, blue for shrinking, full at 50%. */
static rgb_t change_colour(double value, double base)
{
	double change = base > 0 ? (value - base) / base : (value > 0 ? INFINITY : 0);
	double strength = fabs(change) / 0.5;
	if (strength > 1 || isinf(change))
		strength = 1;
	rgb_t grey = { 235, 235, 235 };
	rgb_t towards = change >= 0 ? (rgb_t){ 220, 30, 30 } : (rgb_t){ 40, 90, 225 };
	return (rgb_t){ grey.r + (int)lround((towards.r - grey.r) * strength),
			grey.g + (int)lround((towards.g - grey.g) * strength),
			grey.b + (int)lround((towards.b - grey.b) * strength) };
}

typedef struct draw {
	FILE *out;
	const flame_t *flame;
	const char *unit;
	bool differential;
	double total;
	double width_px; /* of the drawing area */
	int height_px;
	size_t frames;
} draw_t;

static void format_value(double value, const char *unit, char *buffer, size_t size)
{
	double rounded = floor(value + 0.5);
	if (rounded > (double)INT64_MAX)
		rounded = (double)INT64_MAX;
	cprof_format_value((int64_t)rounded, unit, buffer, size);
}

static void draw_frame(draw_t *draw, uint32_t index, double x, int depth)
{
	const flame_node_t *node = &draw->flame->nodes[index];
	const char *name = draw->flame->names[node->name];
	double width = node->value / draw->total * draw->width_px;
	double y = draw->height_px - FLAME_BOTTOM - (depth + 1) * FLAME_FRAME_HEIGHT;
	char value[64], base[64];
	format_value(node->value, draw->unit, value, sizeof value);
	FILE *out = draw->out;
	fputs("<g><title>", out);
	put_xml(out, name, SIZE_MAX);
	if (draw->differential) {
		format_value(node->base, draw->unit, base, sizeof base);
		fprintf(out, " (new %s, %.2f%%; base %s; ", value, 100.0 * node->value / draw->total,
			base);
		if (node->base > 0)
			fprintf(out, "%+.1f%%)", 100.0 * (node->value - node->base) / node->base);
		else
			fputs("not in base)", out);
	} else {
		fprintf(out, " (%s, %.2f%%)", value, 100.0 * node->value / draw->total);
	}
	rgb_t colour = draw->differential ? change_colour(node->value, node->base)
					  : function_colour(name);
	fprintf(out,
		"</title><rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" "
		"fill=\"rgb(%d,%d,%d)\"/>",
		FLAME_MARGIN + x, y, width, FLAME_FRAME_HEIGHT - 1, colour.r, colour.g, colour.b);
	double room = (width - 6) / FLAME_CHAR_PX;
	if (room >= 3) {
		fprintf(out, "<text x=\"%.2f\" y=\"%.1f\">", FLAME_MARGIN + x + 3,
			y + FLAME_FRAME_HEIGHT - 4.5);
		put_xml(out, name, (size_t)room);
		fputs("</text>", out);
	}
	fputs("</g>\n", out);
	draw->frames++;
}

/* Depth-first, an explicit stack: stacks can be thousands of frames deep. */
typedef struct pending {
	uint32_t node;
	int depth;
	double x;
} pending_t;

static int flame_depth(const flame_t *flame, double total, double width_px)
{
	int deepest = 0;
	pending_t *stack = malloc((flame->count + 1) * sizeof *stack);
	if (!stack)
		return -1;
	size_t top = 0;
	stack[top++] = (pending_t){ 0, 0, 0 };
	while (top > 0) {
		pending_t here = stack[--top];
		if (here.depth > deepest)
			deepest = here.depth;
		for (uint32_t c = flame->nodes[here.node].first_child; c != UINT32_MAX;
		     c = flame->nodes[c].next_sibling)
			if (flame->nodes[c].value / total * width_px >= FLAME_MIN_WIDTH_PX)
				stack[top++] = (pending_t){ c, here.depth + 1, 0 };
	}
	free(stack);
	return deepest;
}

static int flame_draw(draw_t *draw)
{
	const flame_t *flame = draw->flame;
	pending_t *stack = malloc((flame->count + 1) * sizeof *stack);
	uint32_t *reversed = malloc((flame->count + 1) * sizeof *reversed);
	if (!stack || !reversed) {
		free(stack);
		free(reversed);
		return -1;
	}
	size_t top = 0;
	stack[top++] = (pending_t){ 0, 0, 0 };
	while (top > 0) {
		pending_t here = stack[--top];
		draw_frame(draw, here.node, here.x, here.depth);
		/* Children left to right; pushed right to left. */
		size_t n = 0;
		double x = here.x;
		for (uint32_t c = flame->nodes[here.node].first_child; c != UINT32_MAX;
		     c = flame->nodes[c].next_sibling) {
			double width = flame->nodes[c].value / draw->total * draw->width_px;
			if (width >= FLAME_MIN_WIDTH_PX) {
				stack[top + n] = (pending_t){ c, here.depth + 1, x };
				reversed[n] = c;
				n++;
			}
			x += width;
		}
		for (size_t i = 0; i < n / 2; i++) {
			pending_t swap = stack[top + i];
			stack[top + i] = stack[top + n - 1 - i];
			stack[top + n - 1 - i] = swap;
		}
		top += n;
	}
	free(stack);
	free(reversed);
	return 0;
}

/* ---- the command ------------------------------------------------------------- */

static void print_flame_usage(FILE *stream)
{
	command_print_usage(stream, command_find("flame"));
	fputs("  PATH...                 profiles (files, directories), merged into one\n"
	      "      --base PATH...      BASE runs (each a file or a directory): a differential\n"
	      "                          graph, red where NEW grew, blue where it shrank\n"
	      "  -o, --output OUT.svg    the SVG file to write\n"
	      "  -t, --sample-type T     sample type by name or index (default: the default)\n"
	      "  -k, --kind KIND         the kind taken from directories (cpu, heap, ...)\n"
	      "      --title TEXT        the title line (default: what is drawn)\n"
	      "      --width PX          the picture's width (default 1200)\n"
	      "      --tag KEY=VALUE     only samples with that label (repeatable)\n"
	      "Exit status: 0 written, 2 unusable input or OUT not writable.\n",
	      stream);
}

typedef struct path_list {
	char **paths;
	size_t count;
} path_list_t;

int command_flame(int argc, char **argv)
{
	const command_t *command = command_find("flame");
	enum { OPTION_BASE = 0x100, OPTION_NEW, OPTION_TITLE, OPTION_WIDTH, OPTION_TAG };
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "sample-type", required_argument, NULL, 't' },
		{ "kind", required_argument, NULL, 'k' },
		{ "base", no_argument, NULL, OPTION_BASE },
		{ "new", no_argument, NULL, OPTION_NEW },
		{ "title", required_argument, NULL, OPTION_TITLE },
		{ "width", required_argument, NULL, OPTION_WIDTH },
		{ "tag", required_argument, NULL, OPTION_TAG },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL, *sample_type_name = NULL, *title = NULL;
	cprof_paths_t paths = { 0 };
	long width_px = 1200;
	path_list_t fresh = { calloc((size_t)argc + 1, sizeof(char *)), 0 };
	path_list_t base = { calloc((size_t)argc + 1, sizeof(char *)), 0 };
	char **all = calloc((size_t)argc + 1, sizeof(char *));
	size_t all_count = 0;
	bool to_base = false;
	int status = EXIT_OK;
	flame_t flame = { 0 };
	bool flame_made = false;
	Perftools__Profiles__Profile *profile = NULL;
	FILE *out = NULL;
	char temporary[PATH_MAX];
	temporary[0] = '\0';
	if (!fresh.paths || !base.paths || !all) {
		status = command_fail("flame: out of memory");
		goto done;
	}
	optind = 0;
	opterr = 0;
	int code;
	while (status == EXIT_OK &&
	       (code = getopt_long(argc, argv, "-:o:t:k:h", options, NULL)) != -1) {
		switch (code) {
		case 1:
			all[all_count++] = optarg;
			if (to_base)
				base.paths[base.count++] = optarg;
			else
				fresh.paths[fresh.count++] = optarg;
			break;
		case OPTION_BASE:
			to_base = true;
			break;
		case OPTION_NEW:
			to_base = false;
			break;
		case OPTION_TAG:
			if (!command_add_tag("flame", optarg))
				status = EXIT_USAGE;
			break;
		case 'o':
			output = optarg;
			break;
		case 't':
			sample_type_name = optarg;
			break;
		case 'k':
			paths.kind = optarg;
			break;
		case OPTION_TITLE:
			title = optarg;
			break;
		case OPTION_WIDTH: {
			char *end;
			errno = 0;
			width_px = strtol(optarg, &end, 10);
			if (*end != '\0' || errno != 0 || end == optarg || width_px < 100 ||
			    width_px > 100000)
				status = command_fail("flame: --width wants pixels from 100 to 100000, "
						      "not \"%s\"", optarg);
			break;
		}
		case 'h':
			print_flame_usage(stdout);
			status = command_finish_output();
			goto done;
		default:
			status = command_option_error(command, code, argv);
		}
	}
	for (; status == EXIT_OK && optind < argc; optind++) {
		all[all_count++] = argv[optind];
		if (to_base)
			base.paths[base.count++] = argv[optind];
		else
			fresh.paths[fresh.count++] = argv[optind];
	}
	if (status != EXIT_OK)
		goto done;
	if (!output) {
		status = command_fail("flame: missing -o OUT.svg; usage: cprof flame %s",
				      command->arguments);
		goto done;
	}
	if (fresh.count == 0) {
		status = command_fail("flame: missing PATH; usage: cprof flame %s",
				      command->arguments);
		goto done;
	}
	char err[1024];
	if (cprof_paths_choose_kind(&paths, all, all_count, err, sizeof err) != 0) {
		status = command_fail("%s", err);
		goto done;
	}
	size_t files;
	status = command_load(&paths, fresh.paths, fresh.count, CPROF_BY_NONE, &profile, &files);
	if (status != EXIT_OK)
		goto done;
	int type = cprof_profile_select_sample_type(profile, sample_type_name);
	if (type < 0) {
		status = command_sample_type_error(fresh.paths[0], profile,
						   sample_type_name ? sample_type_name : "");
		goto done;
	}
	char type_name[256], unit[256];
	snprintf(type_name, sizeof type_name, "%s",
		 cprof_profile_string(profile, profile->sample_type[type]->type));
	snprintf(unit, sizeof unit, "%s",
		 cprof_profile_string(profile, profile->sample_type[type]->unit));
	if (flame_init(&flame) != 0) {
		status = command_fail("flame: out of memory");
		goto done;
	}
	flame_made = true;
	if (flame_add(&flame, profile, type, false, 1.0) != 0) {
		status = command_fail("%s: out of memory", fresh.paths[0]);
		goto done;
	}
	cprof_profile_free(profile);
	profile = NULL;
	for (size_t i = 0; i < base.count; i++) {
		size_t base_files;
		status = command_load(&paths, &base.paths[i], 1, CPROF_BY_NONE, &profile, &base_files);
		if (status != EXIT_OK)
			goto done;
		int base_type = cprof_profile_sample_type_index(profile, type_name);
		if (base_type < 0) {
			status = command_sample_type_error(base.paths[i], profile, type_name);
			goto done;
		}
		const char *base_unit =
			cprof_profile_string(profile, profile->sample_type[base_type]->unit);
		if (strcmp(base_unit, unit) != 0) {
			status = command_fail("%s: sample type %s is in %s, in NEW in %s",
					      base.paths[i], type_name, base_unit[0] ? base_unit : "(no unit)",
					      unit[0] ? unit : "(no unit)");
			goto done;
		}
		if (flame_add(&flame, profile, base_type, true, 1.0 / (double)base.count) != 0) {
			status = command_fail("%s: out of memory", base.paths[i]);
			goto done;
		}
		cprof_profile_free(profile);
		profile = NULL;
	}
	if (!(flame.nodes[0].value > 0)) {
		status = command_fail("%s: nothing to draw: the %s total is 0", fresh.paths[0],
				      type_name);
		goto done;
	}
	if (flame_link(&flame) != 0) {
		status = command_fail("flame: out of memory");
		goto done;
	}

	draw_t draw = {
		.flame = &flame,
		.unit = unit,
		.differential = base.count > 0,
		.total = flame.nodes[0].value,
		.width_px = (double)width_px - 2 * FLAME_MARGIN,
	};
	int depth = flame_depth(&flame, draw.total, draw.width_px);
	if (depth < 0) {
		status = command_fail("flame: out of memory");
		goto done;
	}
	draw.height_px = FLAME_TOP + (depth + 1) * FLAME_FRAME_HEIGHT + FLAME_BOTTOM;
	if ((size_t)snprintf(temporary, sizeof temporary, "%s.tmp.%ld", output, (long)getpid()) >=
	    sizeof temporary) {
		temporary[0] = '\0';
		status = command_fail("%s: path too long", output);
		goto done;
	}
	int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || !(out = fdopen(fd, "w"))) {
		int saved = errno;
		if (fd >= 0)
			close(fd);
		temporary[0] = '\0';
		status = command_fail("%s: %s", output, strerror(saved));
		goto done;
	}
	draw.out = out;
	char total_text[64];
	format_value(draw.total, unit, total_text, sizeof total_text);
	fprintf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%ld\" "
		"height=\"%d\" viewBox=\"0 0 %ld %d\">\n"
		"<style>text{font-family:Verdana,DejaVu Sans,Arial,sans-serif;font-size:11px;"
		"fill:#000}rect{stroke:#fff;stroke-width:0.5}</style>\n"
		"<rect x=\"0\" y=\"0\" width=\"%ld\" height=\"%d\" fill=\"#ffffff\" "
		"style=\"stroke:none\"/>\n"
		"<text x=\"%ld\" y=\"22\" text-anchor=\"middle\" style=\"font-size:15px\">",
		width_px, draw.height_px, width_px, draw.height_px, width_px, draw.height_px,
		width_px / 2);
	if (title) {
		put_xml(out, title, SIZE_MAX);
	} else {
		fputs("cprof flame: ", out);
		put_xml(out, type_name, SIZE_MAX);
		fprintf(out, ", total %s, %zu file%s", total_text, files, files == 1 ? "" : "s");
		if (base.count)
			fprintf(out, "; against %zu base run%s: red grew, blue shrank", base.count,
				base.count == 1 ? "" : "s");
	}
	fputs("</text>\n", out);
	if (flame_draw(&draw) != 0) {
		status = command_fail("flame: out of memory");
		goto done;
	}
	fputs("</svg>\n", out);
	if (fflush(out) != 0 || ferror(out) || fsync(fileno(out)) != 0) {
		status = command_fail("%s: %s", output, strerror(errno));
		goto done;
	}
	FILE *closing = out;
	out = NULL;
	if (fclose(closing) != 0) {
		status = command_fail("%s: %s", output, strerror(errno));
		goto done;
	}
	if (rename(temporary, output) != 0) {
		status = command_fail("%s: %s", output, strerror(errno));
		goto done;
	}
	temporary[0] = '\0';
done:
	if (out)
		fclose(out);
	if (temporary[0])
		unlink(temporary);
	if (flame_made)
		flame_free(&flame);
	cprof_profile_free(profile);
	free(fresh.paths);
	free(base.paths);
	free(all);
	return status;
}
