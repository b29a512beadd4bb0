/* test_symbolize.c — symbolize.c against the truth of this very binary:
 * static function names, inline expansion with real line numbers, the
 * main program first with the build id of its ELF file, libc and vDSO
 * functions, pseudo frames, the mapping flags, the cache, the partial
 * symbol table for told addresses against the whole one, and two timings
 * (printed): new+free with no address, and new + ~200 distinct addresses.
 *
 * test_no_address_no_libdw must run first: it checks that a symbolizer
 * that looked nothing up never loaded libdw.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cprof_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- code with known truth ------------------------------------------ */

static volatile int sink;

__attribute__((noipa)) static uintptr_t capture_pc(void)
{
	/* The caller's return address minus one, as stacks store it. */
	return (uintptr_t)__builtin_return_address(0) - 1;
}

__attribute__((noipa)) static int test_static_fn(int x)
{
	sink += x;
	return sink * 3;
}

enum { INNER_DECL_LINE = __LINE__ + 2 };
static inline __attribute__((always_inline)) uintptr_t
inline_inner(int *line)
{
	sink++;
	*line = __LINE__; uintptr_t pc = capture_pc();
	sink++;
	return pc;
}

__attribute__((noipa)) static uintptr_t inline_outer(int *inner_line, int *call_line)
{
	sink += 2;
	*call_line = __LINE__; uintptr_t pc = inline_inner(inner_line);
	sink += 3;
	return pc;
}

/* A hidden one-byte function followed by code no symbol covers. */
__asm__(".pushsection .text.cprof_test_nosym,\"ax\",@progbits\n"
	".globl cprof_test_nosym_anchor\n"
	".hidden cprof_test_nosym_anchor\n"
	".type cprof_test_nosym_anchor, @function\n"
	"cprof_test_nosym_anchor:\n\tret\n"
	".size cprof_test_nosym_anchor, 1\n"
	"\tnop\n\tnop\n\tnop\n\tnop\n\tret\n"
	".popsection\n");
extern char cprof_test_nosym_anchor[];

/* ---- helpers ---------------------------------------------------------- */

static double clock_ms(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wall time, and the process's CPU time, which a loaded machine blurs
 * less. */
static double now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

static double cpu_ms(void)
{
	return clock_ms(CLOCK_PROCESS_CPUTIME_ID);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int mapping_index(cprof_symbolizer_t *s, const char *path_part)
{
	const cprof_mapping_t *m;
	unsigned n = cprof_symbolizer_mappings(s, &m);
	for (unsigned i = 0; i < n; i++)
		if (strstr(m[i].path, path_part))
			return (int)i;
	return -1;
}

/* The GNU build id of an ELF file, from its section headers: an
 * independent route from symbolize.c's, which reads loaded segments. */
static void file_build_id(const char *path, char *hex, size_t hexsize)
{
	hex[0] = '\0';
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc((size_t)size);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);

	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)buf;
	assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		const Elf64_Shdr *sh =
			(const Elf64_Shdr *)(buf + eh->e_shoff + i * eh->e_shentsize);
		if (sh->sh_type != SHT_NOTE)
			continue;
		size_t off = sh->sh_offset, end = sh->sh_offset + sh->sh_size;
		while (off + sizeof(Elf64_Nhdr) <= end) {
			const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(buf + off);
			size_t name = off + sizeof *nh;
			size_t desc = name + ((nh->n_namesz + 3) & ~3u);
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    memcmp(buf + name, "GNU", 4) == 0 && 2 * nh->n_descsz < hexsize) {
				for (unsigned k = 0; k < nh->n_descsz; k++)
					sprintf(hex + 2 * k, "%02x", buf[desc + k]);
				free(buf);
				return;
			}
			off = desc + ((nh->n_descsz + 3) & ~3u);
		}
	}
	free(buf);
}

/* ---- tests ------------------------------------------------------------ */

static void test_no_address_no_libdw(void **state)
{
	(void)state;
	/* The first symbolizer pays for reading maps once; time the rest. */
	cprof_symbolizer_free(cprof_symbolizer_new());
	enum { N = 200 };
	double t0 = now_ms(), c0 = cpu_ms();
	for (int i = 0; i < N; i++) {
		cprof_symbolizer_t *s = cprof_symbolizer_new();
		assert_non_null(s);
		cprof_symbolizer_free(s);
	}
	double per = (now_ms() - t0) / N;
	printf("[ TIMING ] symbolizer new+free, zero addresses: %.3f ms (cpu %.3f ms)\n",
	       per, (cpu_ms() - c0) / N);
	assert_null(dlopen("libdw.so.1", RTLD_LAZY | RTLD_NOLOAD));
	assert_true(per < 50.0);
}

static void test_main_first_with_build_id(void **state)
{
	(void)state;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	char want[129];
	file_build_id(exe, want, sizeof want);
	assert_true(strlen(want) >= 16); /* gcc on Debian always adds one */

	/* And what readelf says, when binutils are around. */
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof cmd, "readelf -n '%s' 2>/dev/null", exe);
	FILE *p = popen(cmd, "r");
	if (p) {
		char line[512];
		while (fgets(line, sizeof line, p)) {
			char id[129];
			if (sscanf(line, " Build ID: %128s", id) == 1)
				assert_string_equal(id, want);
		}
		pclose(p);
	}

	cprof_symbolizer_t *s = cprof_symbolizer_new();
	assert_non_null(s);
	const cprof_mapping_t *m;
	unsigned count = cprof_symbolizer_mappings(s, &m);
	assert_true(count >= 3); /* the program, libc, ld.so at least */
	assert_string_equal(m[0].path, exe);
	assert_string_equal(m[0].build_id, want);
	uintptr_t here = (uintptr_t)&test_static_fn;
	assert_true(m[0].start <= here && here < m[0].limit);

	bool vdso = false;
	for (unsigned i = 0; i < count; i++) {
		assert_true(m[i].start < m[i].limit);
		assert_non_null(m[i].path);
		assert_non_null(m[i].build_id);
		for (const char *c = m[i].build_id; *c; c++)
			assert_non_null(strchr("0123456789abcdef", *c));
		if (strcmp(m[i].path, "[vdso]") == 0) {
			vdso = true;
			assert_true(strlen(m[i].build_id) > 0);
		}
		if (i > 0)
			assert_string_not_equal(m[i].path, exe);
		/* Nothing looked up yet: no flag. */
		assert_false(m[i].has_functions || m[i].has_filenames ||
			     m[i].has_line_numbers || m[i].has_inline_frames);
	}
	if (getauxval(AT_SYSINFO_EHDR))
		assert_true(vdso);
	int libc = mapping_index(s, "/libc.so");
	assert_true(libc > 0);
	assert_true(strlen(m[libc].build_id) >= 16);
	cprof_symbolizer_free(s);
}

static void test_static_function(void **state)
{
	(void)state;
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	cprof_symbol_t sym;
	cprof_symbolize(s, (uintptr_t)&test_static_fn + 1, &sym);
	assert_int_equal(sym.mapping, 0);
	assert_int_equal(sym.nlines, 1);
	assert_string_equal(sym.lines[0].name, "test_static_fn");
	assert_string_equal(sym.lines[0].system_name, "test_static_fn");
	assert_string_equal(base_name(sym.lines[0].file), "test_symbolize.c");
	assert_true(sym.lines[0].line >= sym.lines[0].start_line);
	assert_true(sym.lines[0].start_line > 0);
	cprof_symbolizer_free(s);
}

static void test_inline_frames(void **state)
{
	(void)state;
	int inner_line = 0, call_line = 0;
	uintptr_t pc = inline_outer(&inner_line, &call_line);
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	cprof_symbol_t sym;
	cprof_symbolize(s, pc, &sym);
	assert_int_equal(sym.mapping, 0);
	assert_true(sym.nlines >= 2);
	const cprof_line_t *in = &sym.lines[0], *out = &sym.lines[sym.nlines - 1];
	assert_string_equal(in->name, "inline_inner");
	assert_string_equal(in->system_name, "inline_inner");
	assert_int_equal(in->line, inner_line);
	assert_int_equal(in->start_line, INNER_DECL_LINE);
	assert_string_equal(base_name(in->file), "test_symbolize.c");
	assert_string_equal(out->name, "inline_outer");
	assert_int_equal(out->line, call_line);
	assert_true(out->start_line > 0 && out->start_line <= call_line);
	assert_string_equal(base_name(out->file), "test_symbolize.c");

	const cprof_mapping_t *m;
	cprof_symbolizer_mappings(s, &m);
	assert_true(m[0].has_functions && m[0].has_filenames &&
		    m[0].has_line_numbers && m[0].has_inline_frames);
	cprof_symbolizer_free(s);
}

static void test_libc_and_vdso(void **state)
{
	(void)state;
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	int libc = mapping_index(s, "/libc.so");
	assert_true(libc > 0);

	cprof_symbol_t sym;
	cprof_symbolize(s, (uintptr_t)&getpid, &sym);
	assert_int_equal(sym.mapping, libc);
	assert_true(sym.nlines >= 1);
	assert_non_null(strstr(sym.lines[sym.nlines - 1].name, "getpid"));
	assert_null(strchr(sym.lines[sym.nlines - 1].name, '@'));

	void *vdso = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
	void *fn = vdso ? dlsym(vdso, "__vdso_clock_gettime") : NULL;
	if (fn) {
		int v = mapping_index(s, "[vdso]");
		assert_true(v > 0);
		cprof_symbolize(s, (uintptr_t)fn, &sym);
		assert_int_equal(sym.mapping, v);
		assert_int_equal(sym.nlines, 1);
		assert_non_null(strstr(sym.lines[0].name, "clock_gettime"));
		const cprof_mapping_t *m;
		cprof_symbolizer_mappings(s, &m);
		assert_true(m[v].has_functions);
	}
	cprof_symbolizer_free(s);
}

static void test_pseudo_and_unmapped(void **state)
{
	(void)state;
	static const struct {
		uintptr_t addr;
		const char *name;
	} cases[] = {
		{ CPROF_FRAME_DROPPED, "[cprof: dropped]" },
		{ CPROF_FRAME_TRUNCATED, "[cprof: truncated]" },
		{ CPROF_FRAME_NOUNWIND, "[cprof: not unwound]" },
		{ 0, "[cprof: unknown]" },
		{ 4095, "[cprof: unknown]" },
	};
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cprof_symbol_t sym;
		cprof_symbolize(s, cases[i].addr, &sym);
		assert_int_equal(sym.mapping, -1);
		assert_int_equal(sym.nlines, 1);
		assert_string_equal(sym.lines[0].name, cases[i].name);
		assert_string_equal(sym.lines[0].system_name, cases[i].name);
		assert_string_equal(sym.lines[0].file, "");
		assert_int_equal(sym.lines[0].line, 0);
	}

	/* Data, not code: a page of our own, never executable. */
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(page != MAP_FAILED);
	cprof_symbolizer_t *s2 = cprof_symbolizer_new();
	cprof_symbol_t sym;
	cprof_symbolize(s2, (uintptr_t)page + 100, &sym);
	assert_int_equal(sym.mapping, -1);
	assert_int_equal(sym.nlines, 0);
	cprof_symbolizer_free(s2);
	munmap(page, 4096);

	/* Neither pseudo nor unmapped addresses count for a mapping. */
	const cprof_mapping_t *m;
	unsigned n = cprof_symbolizer_mappings(s, &m);
	for (unsigned i = 0; i < n; i++)
		assert_false(m[i].has_functions);
	cprof_symbolizer_free(s);
}

static void test_cache(void **state)
{
	(void)state;
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	cprof_symbol_t a, b;
	cprof_symbolize(s, (uintptr_t)&test_static_fn, &a);
	cprof_symbolize(s, (uintptr_t)&test_static_fn, &b);
	assert_ptr_equal(a.lines, b.lines);
	assert_int_equal(a.nlines, b.nlines);
	assert_int_equal(a.mapping, b.mapping);
	/* Many distinct addresses: the table grows, earlier answers stay. */
	uintptr_t base = (uintptr_t)&test_static_fn;
	for (uintptr_t i = 0; i < 5000; i++) {
		cprof_symbol_t c;
		cprof_symbolize(s, base + 0x100000 + i * 16, &c);
	}
	cprof_symbolize(s, (uintptr_t)&test_static_fn, &b);
	assert_ptr_equal(a.lines, b.lines);
	assert_string_equal(b.lines[0].name, "test_static_fn");
	cprof_symbolizer_free(s);
}

static void test_mapping_flags(void **state)
{
	(void)state;
	cprof_symbolizer_t *s = cprof_symbolizer_new();
	const cprof_mapping_t *m;
	cprof_symbol_t sym;

	cprof_symbolize(s, (uintptr_t)&test_static_fn, &sym);
	cprof_symbolizer_mappings(s, &m);
	assert_true(m[0].has_functions);
	assert_true(m[0].has_filenames);
	assert_true(m[0].has_line_numbers);
	assert_true(m[0].has_inline_frames);

	/* The hidden anchor is named; the bytes after it are not. */
	cprof_symbolize(s, (uintptr_t)cprof_test_nosym_anchor, &sym);
	assert_int_equal(sym.mapping, 0);
	assert_int_equal(sym.nlines, 1);
	assert_string_equal(sym.lines[0].name, "cprof_test_nosym_anchor");
	cprof_symbolizer_mappings(s, &m);
	assert_true(m[0].has_functions);
	assert_false(m[0].has_filenames); /* assembly: no line table */
	assert_false(m[0].has_line_numbers);
	assert_false(m[0].has_inline_frames);

	cprof_symbolize(s, (uintptr_t)cprof_test_nosym_anchor + 2, &sym);
	assert_int_equal(sym.mapping, 0);
	assert_int_equal(sym.nlines, 0);
	cprof_symbolizer_mappings(s, &m);
	assert_false(m[0].has_functions);

	/* A mapping nothing was looked up in has no flag. */
	int ld = mapping_index(s, "/ld-linux");
	if (ld >= 0)
		assert_false(m[ld].has_functions || m[ld].has_filenames ||
			     m[ld].has_line_numbers || m[ld].has_inline_frames);

	/* libc: the flags agree with what the lookups returned. */
	int libc = mapping_index(s, "/libc.so");
	uintptr_t fns[] = { (uintptr_t)&getpid, (uintptr_t)&qsort, (uintptr_t)&printf };
	bool all_named = true, all_files = true, all_lines = true;
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		cprof_symbolize(s, fns[i], &sym);
		assert_int_equal(sym.mapping, libc);
		all_named &= sym.nlines > 0;
		for (unsigned k = 0; k < sym.nlines; k++) {
			all_files &= sym.lines[k].file[0] != '\0';
			all_lines &= sym.lines[k].line > 0;
		}
	}
	cprof_symbolizer_mappings(s, &m);
	assert_true(all_named);
	assert_int_equal(m[libc].has_functions, all_named);
	assert_int_equal(m[libc].has_filenames, all_files);
	assert_int_equal(m[libc].has_line_numbers, all_lines);
	if (!all_lines)
		assert_false(m[libc].has_inline_frames);
	cprof_symbolizer_free(s);
}

/* ~200 distinct addresses of this small program: 150 spread over its own
 * code, 50 over libc's. Printed, not asserted tightly. */
/* A symbolizer told its addresses first reads only the part of libc's
 * symbol table they need (symbolize.c's gaps): every answer must be the
 * one the whole table gives, for the told addresses, for some told after
 * the first lookups, and for some never told. */
static const char *outer_name(const cprof_symbol_t *sym)
{
	return sym->nlines ? sym->lines[sym->nlines - 1].name : "";
}

static void test_told_addresses_answer_as_whole_table(void **state)
{
	(void)state;
	cprof_symbolizer_t *whole = cprof_symbolizer_new(), *told = cprof_symbolizer_new();
	const cprof_mapping_t *m;
	cprof_symbolizer_mappings(whole, &m);
	int libc = mapping_index(whole, "/libc.so");
	assert_true(libc > 0);
	enum { FIRST = 400, LATER = 40, UNTOLD = 40, ALL = FIRST + LATER + UNTOLD };
	static uintptr_t a[ALL];
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	uintptr_t span = m[libc].limit - m[libc].start;
	for (unsigned i = 0; i < ALL; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		a[i] = m[libc].start + (uintptr_t)(x % span);
	}
	/* Function entries and their last bytes too, where neighbours meet. */
	const uintptr_t fns[] = { (uintptr_t)&getpid, (uintptr_t)&malloc, (uintptr_t)&qsort,
				  (uintptr_t)&memcpy, (uintptr_t)&strlen, (uintptr_t)&write };
	for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		a[2 * i] = fns[i];
		a[2 * i + 1] = fns[i] - 1;
	}
	for (unsigned i = 0; i < FIRST; i++)
		cprof_symbolizer_want(told, a[i]);
	unsigned named = 0;
	for (unsigned i = 0; i < ALL; i++) {
		if (i == FIRST + LATER / 2)
			for (unsigned j = FIRST; j < FIRST + LATER; j++)
				cprof_symbolizer_want(told, a[j]);
		cprof_symbol_t w, t;
		cprof_symbolize(whole, a[i], &w);
		cprof_symbolize(told, a[i], &t);
		if (strcmp(outer_name(&w), outer_name(&t)) != 0)
			fail_msg("%#lx (address %u): whole table \"%s\", told \"%s\"",
				 (unsigned long)a[i], i, outer_name(&w), outer_name(&t));
		named += w.nlines > 0;
	}
	printf("[ INFO ] %u of %u libc addresses named, the same by both\n", named, ALL);
	assert_true(named > ALL / 2);
	cprof_symbolizer_free(whole);
	cprof_symbolizer_free(told);
}

static void test_timing_200_addresses(void **state)
{
	(void)state;
	for (int round = 0; round < 2; round++) {
		double t0 = now_ms(), c0 = cpu_ms();
		cprof_symbolizer_t *s = cprof_symbolizer_new();
		const cprof_mapping_t *m;
		cprof_symbolizer_mappings(s, &m);
		int libc = mapping_index(s, "/libc.so");
		assert_true(libc > 0);
		unsigned named = 0, total = 0;
		bool libc_dwarf = false;
		for (int k = 0; k < 2; k++) {
			const cprof_mapping_t *mm = &m[k == 0 ? 0 : libc];
			unsigned n = k == 0 ? 150 : 50;
			uint64_t step = (mm->limit - mm->start) / (n + 1);
			for (unsigned i = 1; i <= n; i++) {
				cprof_symbol_t sym;
				cprof_symbolize(s, mm->start + i * step + 1, &sym);
				total++;
				named += sym.nlines > 0;
				libc_dwarf |= k == 1 && sym.nlines > 0 && sym.lines[0].file[0];
			}
		}
		cprof_symbolizer_mappings(s, &m);
		cprof_symbolizer_free(s);
		double ms = now_ms() - t0, cpu = cpu_ms() - c0;
		printf("[ TIMING ] symbolizer new + %u addresses (%u named, libc %s) + free, "
		       "round %d: %.3f ms (cpu %.3f ms)\n", total, named,
		       libc_dwarf ? "with DWARF" : "symbols only", round + 1, ms, cpu);
		assert_true(named > total / 2);
		assert_true(ms < 2000.0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_address_no_libdw), /* first: see above */
		cmocka_unit_test(test_main_first_with_build_id),
		cmocka_unit_test(test_static_function),
		cmocka_unit_test(test_inline_frames),
		cmocka_unit_test(test_libc_and_vdso),
		cmocka_unit_test(test_pseudo_and_unmapped),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_mapping_flags),
		cmocka_unit_test(test_told_addresses_answer_as_whole_table),
		cmocka_unit_test(test_timing_200_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
