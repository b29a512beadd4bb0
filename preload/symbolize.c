/* symbolize.c — turns code addresses of the current process into pprof
 * mappings, functions, files and lines, on the dump path only.
 *
 * Owns: reading /proc/self/maps into the mapping table (the main program
 * first) with GNU build ids read from the loaded images in memory
 * (dl_iterate_phdr, no file opened); the lazily dlopen'd libdw (elfutils),
 * whose few functions live in a static table of pointers, so that a
 * process that never symbolizes never loads it; inline expansion from
 * DWARF, read only for the modules CPROF_LINES asks for (by default not
 * for system libraries' separate debug files, whose decompression was
 * most of a short process's exit); function symbol tables, each read
 * whole or, when a dump told its addresses first, only the part they
 * need (build_wanted_symbols); the dladdr() fallback when libdw is
 * missing; the per-symbolizer address cache and the arena holding every
 * string it hands out.
 *
 * Not signal-safe: malloc, stdio, files and dlopen are used freely.
 */
#include "cprof_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Types and prototypes only: nothing of libdw is linked. */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>

/* ---- libdw, loaded on first use -------------------------------------- */

#define CPROF_DW_FUNCS(X)                                                    \
	X(dwfl_begin)                                                        \
	X(dwfl_end)                                                          \
	X(dwfl_report_begin)                                                 \
	X(dwfl_report_end)                                                   \
	X(dwfl_report_module)                                                \
	X(dwfl_linux_proc_find_elf)                                          \
	X(dwfl_build_id_find_debuginfo)                                      \
	X(dwfl_module_build_id)                                              \
	X(dwfl_addrmodule)                                                   \
	X(dwfl_module_getsymtab)                                             \
	X(dwfl_module_getsym_info)                                           \
	X(dwfl_module_addrdie)                                               \
	X(dwfl_module_getsrc)                                                \
	X(dwfl_lineinfo)                                                     \
	X(dwfl_errmsg)                                                       \
	X(dwarf_getscopes)                                                   \
	X(dwarf_cu_info)                                                     \
	X(dwarf_child)                                                       \
	X(dwarf_siblingof)                                                   \
	X(dwarf_haspc)                                                       \
	X(dwarf_hasattr)                                                     \
	X(dwarf_ranges)                                                      \
	X(dwarf_getscopes_die)                                               \
	X(dwarf_tag)                                                         \
	X(dwarf_attr)                                                        \
	X(dwarf_attr_integrate)                                              \
	X(dwarf_formstring)                                                  \
	X(dwarf_formudata)                                                   \
	X(dwarf_diecu)                                                       \
	X(dwarf_getsrcfiles)                                                 \
	X(dwarf_filesrc)                                                     \
	X(dwfl_module_getelf)                                                \
	X(elf_getscn)                                                        \
	X(elf_nextscn)                                                       \
	X(elf_getshdrstrndx)                                                 \
	X(elf_strptr)                                                        \
	X(elf_getdata)                                                       \
	X(gelf_getehdr)                                                      \
	X(gelf_getshdr)

#define CPROF_DW_MEMBER(name) __typeof__(name) *name;
static struct {
	CPROF_DW_FUNCS(CPROF_DW_MEMBER)
} dw;
#undef CPROF_DW_MEMBER

static pthread_once_t dw_once = PTHREAD_ONCE_INIT;
static bool dw_ok;                 /* every pointer of dw resolved */
static Dwfl_Callbacks dw_callbacks; /* outlives every Dwfl */

static int find_debuginfo_local(Dwfl_Module *mod, void **userdata,
				const char *modname, Dwarf_Addr base,
				const char *file_name, const char *debuglink_file,
				GElf_Word debuglink_crc, char **debuginfo_file_name);

static void dw_load(void)
{
	void *h = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *err = dlerror();
		cprof_log("libdw.so.1 not loaded (%s): function names from "
			  "dynamic symbols only, no files or lines",
			  err ? err : "?");
		return;
	}
#define CPROF_DW_SYM(name)                                                  \
	dw.name = (__typeof__(dw.name))dlsym(h, #name);                      \
	if (!dw.name) {                                                      \
		cprof_log("libdw.so.1 lacks %s: function names from dynamic "  \
			  "symbols only, no files or lines", #name);           \
		dlclose(h);                                                  \
		return;                                                      \
	}
	CPROF_DW_FUNCS(CPROF_DW_SYM)
#undef CPROF_DW_SYM
	dw_callbacks.find_elf = dw.dwfl_linux_proc_find_elf;
	dw_callbacks.find_debuginfo = find_debuginfo_local;
	dw_callbacks.debuginfo_path = NULL; /* the standard search path */
	dw_ok = true;
}

/* ---- GNU build ids ---------------------------------------------------- */

/* Finds NT_GNU_BUILD_ID among the notes at p (a PT_NOTE segment of a
 * loaded image or an SHT_NOTE section read from a file). Returns the
 * length of the id, *desc pointing at it, or 0. */
static size_t note_find_build_id(const unsigned char *p, size_t len, size_t align,
				 const unsigned char **desc)
{
	while (len >= sizeof(ElfW(Nhdr))) {
		ElfW(Nhdr) nh;
		memcpy(&nh, p, sizeof nh);
		size_t name_off = sizeof nh;
		size_t desc_off = name_off + (((size_t)nh.n_namesz + align - 1) & ~(align - 1));
		size_t next = desc_off + (((size_t)nh.n_descsz + align - 1) & ~(align - 1));
		if (desc_off > len || nh.n_descsz > len - desc_off)
			return 0;
		if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
		    memcmp(p + name_off, "GNU", 4) == 0 && nh.n_descsz > 0) {
			*desc = p + desc_off;
			return nh.n_descsz;
		}
		if (next >= len)
			return 0;
		p += next;
		len -= next;
	}
	return 0;
}

/* Separate debug information, looked for locally only. The standard
 * callback (dwfl_standard_find_debuginfo) ends, when nothing is found, by
 * asking a debuginfod server: that dlopens libdebuginfod and libcurl (some
 * thirty libraries) into the profiled process, and with DEBUGINFOD_URLS
 * set it means network round trips per library at dump time. So: the
 * build-id tree first (/usr/lib/debug/.build-id, where -dbgsym packages
 * install; it also finds dwz alternate files), then .gnu_debuglink in the
 * places gdb and elfutils look by default, checked against the build id. */

/* The shim's own file I/O is raw system calls: below its wrappers and
 * any the program defines. */
static ssize_t read_at(int fd, void *buf, size_t n, off_t off)
{
	return syscall(SYS_pread64, fd, buf, n, off);
}

static int open_read(const char *path)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
}

static void close_fd(int fd)
{
	syscall(SYS_close, fd);
}

/* The build id of an ELF file, from its SHT_NOTE sections, read with
 * read_at: -1 when not ELF, 0 when it has none. */
static ssize_t file_build_id(int fd, unsigned char *out, size_t outsize)
{
	ElfW(Ehdr) eh;
	if (read_at(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
	    eh.e_shentsize != sizeof(ElfW(Shdr)) || eh.e_shnum == 0 ||
	    eh.e_shnum > 4096)
		return -1;
	for (unsigned i = 0; i < eh.e_shnum; i++) {
		ElfW(Shdr) sh;
		if (read_at(fd, &sh, sizeof sh, (off_t)(eh.e_shoff + (uint64_t)i * sizeof sh)) !=
		    (ssize_t)sizeof sh)
			return -1;
		if (sh.sh_type != SHT_NOTE || sh.sh_size < sizeof(ElfW(Nhdr)) ||
		    sh.sh_size > 4096)
			continue;
		unsigned char buf[4096];
		if (read_at(fd, buf, sh.sh_size, (off_t)sh.sh_offset) != (ssize_t)sh.sh_size)
			continue;
		size_t align = sh.sh_addralign == 8 ? 8 : 4;
		const unsigned char *desc;
		size_t len = note_find_build_id(buf, sh.sh_size, align, &desc);
		if (len && len <= outsize) {
			memcpy(out, desc, len);
			return (ssize_t)len;
		}
	}
	return 0;
}

static int try_debuglink(Dwfl_Module *mod, const char *path, const char *main_file,
			 char **debuginfo_file_name)
{
	if (strcmp(path, main_file) == 0)
		return -1;
	int fd = open_read(path);
	if (fd < 0)
		return -1;
	const unsigned char *want;
	GElf_Addr vaddr;
	int want_len = dw.dwfl_module_build_id(mod, &want, &vaddr);
	if (want_len > 0) {
		unsigned char have[64];
		ssize_t have_len = file_build_id(fd, have, sizeof have);
		if (have_len != want_len || memcmp(have, want, (size_t)want_len) != 0) {
			close_fd(fd);
			return -1;
		}
	}
	*debuginfo_file_name = strdup(path);
	if (!*debuginfo_file_name) {
		close_fd(fd);
		return -1;
	}
	return fd;
}

static int find_debuginfo_local(Dwfl_Module *mod, void **userdata,
				const char *modname, Dwarf_Addr base,
				const char *file_name, const char *debuglink_file,
				GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	int fd = dw.dwfl_build_id_find_debuginfo(mod, userdata, modname, base,
						  file_name, debuglink_file,
						  debuglink_crc,
						  debuginfo_file_name);
	if (fd >= 0 || !debuglink_file || !*debuglink_file || !file_name ||
	    file_name[0] != '/' || strchr(debuglink_file, '/'))
		return fd;

	const char *slash = strrchr(file_name, '/');
	int dirlen = (int)(slash - file_name);
	char path[PATH_MAX];
	const char *const fmts[] = { "%.*s/%s", "%.*s/.debug/%s", "/usr/lib/debug%.*s/%s" };
	for (unsigned i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
		int n = snprintf(path, sizeof path, fmts[i], dirlen, file_name, debuglink_file);
		if (n <= 0 || (size_t)n >= sizeof path)
			continue;
		fd = try_debuglink(mod, path, file_name, debuginfo_file_name);
		if (fd >= 0)
			return fd;
	}
	errno = 0;
	return -1;
}

/* ---- arena and interned strings ------------------------------------- */

typedef struct arena_block {
	struct arena_block *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
} arena_block_t;

#define ARENA_BLOCK 65536

static void *arena_alloc(arena_block_t **head, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	arena_block_t *b = *head;
	if (!b || b->size - b->used < n) {
		size_t size = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
		arena_block_t *nb = malloc(sizeof *nb + size);
		if (!nb)
			return NULL;
		nb->used = 0;
		nb->size = size;
		if (b && size != ARENA_BLOCK) {
			/* A big one-off: keep the current block current. */
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = b;
			*head = nb;
		}
		b = nb;
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

static void arena_free(arena_block_t *b)
{
	while (b) {
		arena_block_t *next = b->next;
		free(b);
		b = next;
	}
}

/* ---- the symbolizer -------------------------------------------------- */

typedef struct {
	uintptr_t addr;          /* 0: empty slot (pseudo addresses are < 4096) */
	int mapping;
	unsigned nlines;
	const cprof_line_t *lines;
} cache_entry_t;

typedef struct {
	unsigned lookups, functions, filenames, lines, dwarf;
} mapping_stats_t;

typedef struct {
	uint64_t lo, hi;    /* hi: lo + size, or the next symbol when sizeless */
	const char *name;   /* in the module's string table */
	uint32_t order;     /* lower wins among symbols at one address */
	uint32_t sized;     /* 32 bytes in all: glibc's qsort sorts larger
			     * elements through an array of pointers */
} sym_t;

/* The addresses a dump will look up in one mapping, told before the
 * first lookup (cprof_symbolizer_want), so its symbol table is read for
 * them alone (see build_symbols). */
typedef struct {
	uintptr_t *v;
	size_t n, cap;
	size_t sorted;              /* v[0..sorted) sorted, distinct */
	bool overflow;              /* too many, or one unannounced: the whole table */
} wanted_t;

typedef struct {
	bool mod_tried, syms_built;
	bool main_program;          /* the executable's own file */
	int8_t dwarf;               /* DWARF read for it: -1 not decided yet, 0, 1 */
	Dwfl_Module *mod;           /* the libdw module holding the mapping */
	sym_t *syms;                /* function symbols sorted by address */
	size_t nsyms;
	bool partial;               /* syms answer for covered[] only */
	uintptr_t *covered;         /* sorted, distinct */
	size_t ncovered;
	wanted_t want;              /* told since syms were made */
} mapping_state_t;

typedef struct {
	Dwarf_Addr lo, hi;
	Dwarf_Die die;
} fn_range_t;

typedef struct {
	int mapping;
	uintptr_t cu_key;   /* the unit DIE's place in memory: unique across
			     * every file libdw has open (main, .debug, .dwo) */
	bool used;
	fn_range_t *v;      /* sorted by lo */
	size_t n;
} cu_index_t;

struct cprof_symbolizer {
	cprof_mapping_t *mappings;  /* main program first */
	mapping_stats_t *stats;     /* parallel to mappings */
	unsigned *by_addr;          /* indices of mappings sorted by start */
	unsigned nmappings;

	cache_entry_t *cache;
	size_t cache_cap, cache_used; /* cap: power of two */

	char **strings;             /* interned, open addressing */
	size_t strings_cap, strings_used;

	arena_block_t *arena;
	Dwfl *dwfl;
	bool dwfl_tried;
	mapping_state_t *mstate;    /* parallel to mappings, libdw lookups */
	cu_index_t *cus;            /* function index per compile unit */
	size_t cus_cap, cus_used;
	Dwarf_Die *scratch;         /* 2 * MAX_SCOPES DIEs for scopes_for */
	char *maps_text;            /* /proc/self/maps as read_maps read it */
};

static uint64_t hash_addr(uintptr_t a)
{
	uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 29);
}

static uint64_t hash_str(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

/* Returns the symbolizer's copy of str ("" for NULL); NULL only when out
 * of memory. */
static const char *intern(cprof_symbolizer_t *s, const char *str)
{
	if (!str || !*str)
		return "";
	if (s->strings_used * 2 >= s->strings_cap) {
		size_t cap = s->strings_cap ? s->strings_cap * 2 : 1024;
		char **t = calloc(cap, sizeof *t);
		if (!t)
			return NULL;
		for (size_t i = 0; i < s->strings_cap; i++) {
			char *p = s->strings[i];
			if (!p)
				continue;
			size_t j = hash_str(p) & (cap - 1);
			while (t[j])
				j = (j + 1) & (cap - 1);
			t[j] = p;
		}
		free(s->strings);
		s->strings = t;
		s->strings_cap = cap;
	}
	size_t mask = s->strings_cap - 1;
	size_t j = hash_str(str) & mask;
	for (; s->strings[j]; j = (j + 1) & mask)
		if (strcmp(s->strings[j], str) == 0)
			return s->strings[j];
	size_t n = strlen(str) + 1;
	char *copy = arena_alloc(&s->arena, n);
	if (!copy)
		return NULL;
	memcpy(copy, str, n);
	s->strings[j] = copy;
	s->strings_used++;
	return copy;
}

static const char *intern_or_empty(cprof_symbolizer_t *s, const char *str)
{
	const char *p = intern(s, str);
	return p ? p : "";
}

/* ---- mappings -------------------------------------------------------- */

typedef struct {
	cprof_symbolizer_t *s;
	char hex[2 * 64 + 1];
} build_id_ctx_t;

static int build_id_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	build_id_ctx_t *ctx = arg;
	cprof_symbolizer_t *s = ctx->s;
	(void)size;

	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < lo)
			lo = a;
		if (a + ph->p_memsz > hi)
			hi = a + ph->p_memsz;
	}
	if (lo >= hi)
		return 0;
	lo &= ~(uintptr_t)4095;

	bool any = false;
	for (unsigned m = 0; m < s->nmappings; m++)
		if (s->mappings[m].start >= lo && s->mappings[m].start < hi &&
		    !s->mappings[m].build_id[0])
			any = true;
	if (!any)
		return 0;

	ctx->hex[0] = '\0';
	for (int i = 0; i < info->dlpi_phnum && !ctx->hex[0]; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const unsigned char *d;
		size_t n = note_find_build_id(
			(const unsigned char *)(info->dlpi_addr + ph->p_vaddr),
			ph->p_memsz, ph->p_align == 8 ? 8 : 4, &d);
		if (n == 0 || 2 * n >= sizeof ctx->hex)
			continue;
		for (size_t j = 0; j < n; j++) {
			ctx->hex[2 * j] = "0123456789abcdef"[d[j] >> 4];
			ctx->hex[2 * j + 1] = "0123456789abcdef"[d[j] & 15];
		}
		ctx->hex[2 * n] = '\0';
	}
	if (!ctx->hex[0])
		return 0;
	const char *id = intern_or_empty(s, ctx->hex);
	for (unsigned m = 0; m < s->nmappings; m++)
		if (s->mappings[m].start >= lo && s->mappings[m].start < hi &&
		    !s->mappings[m].build_id[0])
			s->mappings[m].build_id = id;
	return 0;
}

static bool is_main_path(const char *path, const char *exe)
{
	return exe[0] && strcmp(path, exe) == 0;
}

/* The whole of a /proc file (its size is not known before), with a
 * terminating NUL; NULL and errno on failure. */
static char *read_proc_file(const char *path, size_t *len)
{
	int fd = open_read(path);
	if (fd < 0)
		return NULL;
	size_t cap = 16 * 1024, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (cap - n < 4096) {
			char *t = realloc(buf, cap * 2);
			if (!t) {
				free(buf);
				buf = NULL;
				errno = ENOMEM;
				break;
			}
			buf = t;
			cap *= 2;
		}
		ssize_t got = syscall(SYS_read, fd, buf + n, cap - n - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (got == 0) {
			buf[n] = '\0';
			*len = n;
			break;
		}
		n += (size_t)got;
	}
	int saved = errno;
	close_fd(fd);
	errno = saved;
	return buf;
}

/* A number in base 16 or 10 at *p, which is left after it; false: no
 * digit there. */
static bool parse_number(const char **p, const char *end, unsigned base, unsigned long *out)
{
	const char *q = *p;
	unsigned long v = 0;
	for (; q < end; q++) {
		unsigned d;
		if (*q >= '0' && *q <= '9')
			d = (unsigned)(*q - '0');
		else if (base == 16 && (*q | 32) >= 'a' && (*q | 32) <= 'f')
			d = (unsigned)((*q | 32) - 'a' + 10);
		else
			break;
		v = v * base + d;
	}
	if (q == *p)
		return false;
	*p = q;
	*out = v;
	return true;
}

/* One line of maps, [line, eol): "start-end perms offset major:minor inode
 * path" (sscanf cost 3,000 instructions a line). */
typedef struct {
	unsigned long start, end, offset, major, minor, inode;
	bool exec;
	const char *path;   /* not NUL-terminated: path_len bytes */
	size_t path_len;
} maps_line_t;

/* false when [line, eol) is not such a line. */
static bool parse_maps_line(const char *line, const char *eol, maps_line_t *out)
{
	const char *p = line;
	if (!parse_number(&p, eol, 16, &out->start) || p >= eol || *p++ != '-' ||
	    !parse_number(&p, eol, 16, &out->end) || p >= eol || *p++ != ' ' || eol - p < 5 ||
	    p[4] != ' ')
		return false;
	out->exec = p[2] == 'x';
	p += 5;
	if (!parse_number(&p, eol, 16, &out->offset) || p >= eol || *p++ != ' ' ||
	    !parse_number(&p, eol, 16, &out->major) || p >= eol || *p++ != ':' ||
	    !parse_number(&p, eol, 16, &out->minor) || p >= eol || *p++ != ' ' ||
	    !parse_number(&p, eol, 10, &out->inode))
		return false;
	while (p < eol && (*p == ' ' || *p == '\t'))
		p++;
	out->path = p;
	out->path_len = (size_t)(eol - p);
	return true;
}

/* Calls fn for each line of the maps text. */
static void maps_foreach(const char *text, void (*fn)(const maps_line_t *, void *), void *ctx)
{
	for (const char *line = text, *next; *line; line = next) {
		const char *eol = strchr(line, '\n');
		next = eol ? eol + 1 : line + strlen(line);
		maps_line_t ml;
		if (parse_maps_line(line, eol ? eol : next, &ml))
			fn(&ml, ctx);
	}
}

typedef struct {
	cprof_symbolizer_t *s;
	cprof_mapping_t *maps;
	unsigned count, cap;
	int err;
} mappings_ctx_t;

/* read_maps: the executable mappings, in the order of maps. */
static void add_mapping(const maps_line_t *ml, void *p)
{
	mappings_ctx_t *c = p;
	if (!ml->exec || c->err)
		return;
	char path[PATH_MAX];
	size_t len = ml->path_len < sizeof path ? ml->path_len : sizeof path - 1;
	memcpy(path, ml->path, len);
	path[len] = '\0';
	if (c->count == c->cap) {
		unsigned ncap = c->cap ? c->cap * 2 : 64;
		cprof_mapping_t *t = realloc(c->maps, ncap * sizeof *t);
		if (!t) {
			c->err = -ENOMEM;
			return;
		}
		c->maps = t;
		c->cap = ncap;
	}
	const char *interned = intern(c->s, path);
	if (!interned) {
		c->err = -ENOMEM;
		return;
	}
	c->maps[c->count++] = (cprof_mapping_t){
		.start = ml->start, .limit = ml->end, .offset = ml->offset,
		.path = interned, .build_id = "",
	};
}

static int read_maps(cprof_symbolizer_t *s)
{
	char exe[PATH_MAX];
	/* thread-self: after main's pthread_exit, /proc/self is a zombie
	 * with no memory map. */
	ssize_t n = syscall(SYS_readlinkat, AT_FDCWD, "/proc/thread-self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = '\0';

	/* Read once, a page a system call (stdio reads /proc files a KiB at
	 * a time), and kept for libdw's modules (get_dwfl). */
	size_t text_len = 0;
	char *text = read_proc_file("/proc/thread-self/maps", &text_len);
	if (!text)
		return -errno;
	s->maps_text = text;
	mappings_ctx_t found = { .s = s };
	maps_foreach(text, add_mapping, &found);
	cprof_mapping_t *maps = found.maps;
	unsigned count = found.count;
	if (found.err) {
		free(maps);
		return found.err;
	}

	/* The main program first (pprof's mapping 1), then the rest; both
	 * parts keep the address order of maps. */
	s->mappings = calloc(count ? count : 1, sizeof *s->mappings);
	s->stats = calloc(count ? count : 1, sizeof *s->stats);
	s->by_addr = calloc(count ? count : 1, sizeof *s->by_addr);
	s->mstate = calloc(count ? count : 1, sizeof *s->mstate);
	if (!s->mappings || !s->stats || !s->by_addr || !s->mstate) {
		free(maps);
		return -ENOMEM;
	}
	unsigned k = 0;
	for (unsigned i = 0; i < count; i++)
		if (is_main_path(maps[i].path, exe)) {
			s->mstate[k].main_program = true;
			s->mappings[k++] = maps[i];
		}
	for (unsigned i = 0; i < count; i++)
		s->mstate[i].dwarf = -1;
	for (unsigned i = 0; i < count; i++)
		if (!is_main_path(maps[i].path, exe))
			s->mappings[k++] = maps[i];
	s->nmappings = count;
	free(maps);

	/* by_addr: insertion sort, the list is short and nearly sorted. */
	for (unsigned i = 0; i < count; i++) {
		unsigned j = i;
		while (j > 0 && s->mappings[s->by_addr[j - 1]].start > s->mappings[i].start) {
			s->by_addr[j] = s->by_addr[j - 1];
			j--;
		}
		s->by_addr[j] = i;
	}

	build_id_ctx_t ctx = { .s = s };
	dl_iterate_phdr(build_id_cb, &ctx);
	return 0;
}

static int find_mapping(const cprof_symbolizer_t *s, uintptr_t a)
{
	unsigned lo = 0, hi = s->nmappings;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const cprof_mapping_t *m = &s->mappings[s->by_addr[mid]];
		if (a < m->start)
			hi = mid;
		else if (a >= m->limit)
			lo = mid + 1;
		else
			return (int)s->by_addr[mid];
	}
	return -1;
}

int cprof_symbolizer_mapping_of(cprof_symbolizer_t *s, uintptr_t address)
{
	return find_mapping(s, address);
}

cprof_symbolizer_t *cprof_symbolizer_new(void)
{
	cprof_symbolizer_t *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	int err = read_maps(s);
	if (err) {
		cprof_log("symbolizer: cannot read /proc/self/maps (errno %d)", -err);
		cprof_symbolizer_free(s);
		return NULL;
	}
	return s;
}

void cprof_symbolizer_free(cprof_symbolizer_t *s)
{
	if (!s)
		return;
	if (s->dwfl)
		dw.dwfl_end(s->dwfl);
	free(s->mappings);
	free(s->stats);
	free(s->by_addr);
	for (unsigned i = 0; s->mstate && i < s->nmappings; i++) {
		free(s->mstate[i].syms);
		free(s->mstate[i].want.v);
		free(s->mstate[i].covered);
	}
	free(s->mstate);
	for (size_t i = 0; i < s->cus_cap; i++)
		free(s->cus[i].v);
	free(s->cus);
	free(s->scratch);
	free(s->maps_text);
	free(s->cache);
	free(s->strings);
	arena_free(s->arena);
	free(s);
}

unsigned cprof_symbolizer_mappings(cprof_symbolizer_t *s, const cprof_mapping_t **out)
{
	for (unsigned i = 0; i < s->nmappings; i++) {
		cprof_mapping_t *m = &s->mappings[i];
		const mapping_stats_t *st = &s->stats[i];
		bool looked = st->lookups > 0;
		m->has_functions = looked && st->functions == st->lookups;
		m->has_filenames = looked && st->filenames == st->lookups;
		m->has_line_numbers = looked && st->lines == st->lookups;
		m->has_inline_frames = m->has_line_numbers && st->dwarf == st->lookups;
	}
	*out = s->mappings;
	return s->nmappings;
}

/* ---- lookups --------------------------------------------------------- */

#define MAX_FRAMES 64  /* inline depth kept per address */
#define MAX_SCOPES 256 /* DIE nesting followed per address */

typedef struct {
	const char *name;   /* NULL: unknown */
	const char *file;
	int64_t line, start_line;
} frame_t;

typedef struct {
	frame_t frames[MAX_FRAMES];
	unsigned n;
	bool dwarf;         /* a compile unit covered the address */
	char symbuf[1024];  /* a symbol name without its version */
} result_t;

void cprof_symbolize_load(void)
{
	pthread_once(&dw_once, dw_load);
}

/* The modules for libdw, as its dwfl_linux_proc_maps_report makes them
 * from the same text (reporting them here spares its sscanf of every
 * line, 0.5 M instructions of a short process's dump): one module per run
 * of lines of one file (one device and inode), from the run's first
 * start to its last end; a line without a file (no path from the root,
 * or inode 0 on device 0:0) is none. */
typedef struct {
	Dwfl *d;
	char file[PATH_MAX]; /* the module being gathered; "" none */
	unsigned long low, high, major, minor, inode;
	bool failed;
} report_ctx_t;

static void report_flush(report_ctx_t *r)
{
	if (r->file[0] && !r->failed && !dw.dwfl_report_module(r->d, r->file, r->low, r->high))
		r->failed = true;
	r->file[0] = '\0';
}

static void report_line(const maps_line_t *ml, void *p)
{
	report_ctx_t *r = p;
	if (!ml->path_len || ml->path[0] != '/' ||
	    (ml->inode == 0 && ml->major == 0 && ml->minor == 0))
		return;
	size_t len = ml->path_len < sizeof r->file ? ml->path_len : sizeof r->file - 1;
	if (r->file[0] && ml->inode == r->inode && ml->major == r->major && ml->minor == r->minor) {
		if (strlen(r->file) != len || memcmp(r->file, ml->path, len) != 0)
			r->failed = true; /* one file, two names: libdw gives up too */
		r->high = ml->end;
		return;
	}
	report_flush(r);
	memcpy(r->file, ml->path, len);
	r->file[len] = '\0';
	r->low = ml->start;
	r->high = ml->end;
	r->major = ml->major;
	r->minor = ml->minor;
	r->inode = ml->inode;
}

/* The session of this symbolizer, made on its first lookup; NULL when
 * libdw is not there (dladdr answers then). */
static Dwfl *get_dwfl(cprof_symbolizer_t *s)
{
	static atomic_int warned; /* one line per process, not per dump */
	if (s->dwfl_tried)
		return s->dwfl;
	s->dwfl_tried = true;
	pthread_once(&dw_once, dw_load);
	if (!dw_ok)
		return NULL;
	Dwfl *d = dw.dwfl_begin(&dw_callbacks);
	if (!d) {
		if (!atomic_exchange(&warned, 1))
			cprof_log("symbolizer: dwfl_begin: %s", dw.dwfl_errmsg(-1));
		return NULL;
	}
	/* Modules are reported from the maps read_maps read (libdw reading
	 * them again, and auxv for the vDSO, cost a tenth of a short
	 * process's dump); each ELF file is opened on the first address
	 * looked up in it, not before. The vDSO has no file: dladdr names
	 * its functions (lookup_libdw). */
	dw.dwfl_report_begin(d);
	report_ctx_t r = { .d = d };
	maps_foreach(s->maps_text, report_line, &r);
	report_flush(&r);
	if (dw.dwfl_report_end(d, NULL, NULL) != 0 || r.failed) {
		if (!atomic_exchange(&warned, 1))
			cprof_log("symbolizer: cannot report the mappings to libdw: %s",
				  dw.dwfl_errmsg(-1));
		dw.dwfl_end(d);
		return NULL;
	}
	s->scratch = malloc(2 * MAX_SCOPES * sizeof *s->scratch);
	s->dwfl = d;
	return d;
}

/* The function's name as the DWARF gives it: the linkage (mangled) name
 * where there is one, else the plain name, following abstract_origin and
 * specification. */
static const char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute a;
	const char *n = NULL;
	if (dw.dwarf_attr_integrate(die, DW_AT_linkage_name, &a))
		n = dw.dwarf_formstring(&a);
	if (!n && dw.dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a))
		n = dw.dwarf_formstring(&a);
	if (!n && dw.dwarf_attr_integrate(die, DW_AT_name, &a))
		n = dw.dwarf_formstring(&a);
	return n;
}

static int64_t die_udata(Dwarf_Die *die, unsigned attr, bool integrate)
{
	Dwarf_Attribute a;
	Dwarf_Word v;
	Dwarf_Attribute *p = integrate ? dw.dwarf_attr_integrate(die, attr, &a)
				       : dw.dwarf_attr(die, attr, &a);
	if (!p || dw.dwarf_formudata(p, &v) != 0 || v > INT64_MAX)
		return 0;
	return (int64_t)v;
}

/* DW_AT_call_file of an inlined subroutine, resolved in its own unit. */
static const char *die_call_file(Dwarf_Die *die)
{
	Dwarf_Attribute a;
	Dwarf_Word idx;
	Dwarf_Die cu;
	Dwarf_Files *files;
	size_t nfiles;
	if (!dw.dwarf_attr(die, DW_AT_call_file, &a) || dw.dwarf_formudata(&a, &idx) != 0)
		return NULL;
	if (!dw.dwarf_diecu(die, &cu, NULL, NULL) ||
	    dw.dwarf_getsrcfiles(&cu, &files, &nfiles) != 0 || idx >= nfiles)
		return NULL;
	return dw.dwarf_filesrc(files, idx, NULL, NULL);
}

static bool is_function_tag(int tag)
{
	return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine ||
	       tag == DW_TAG_entry_point;
}

/* ---- symbol index ----------------------------------------------------
 * dwfl_module_addrinfo scans the whole symbol table on every call (libc's
 * has 10,000 symbols: ~0.15 ms a lookup; a large C++ program's, seconds a
 * dump). So each mapping gets its symbols sorted once, on its first
 * lookup, and answers by binary search. As in elfutils, a sized symbol
 * containing the address wins, else the closest sizeless one below it
 * within its section. Among aliases at one address: sized, FUNC, global
 * or weak first, then the most readable name (realloc, not
 * __libc_realloc; __printf_fp_l, not __GI___printf_fp_l). */

static unsigned sym_rank(const GElf_Sym *sym)
{
	unsigned r = 0;
	unsigned type = GELF_ST_TYPE(sym->st_info), bind = GELF_ST_BIND(sym->st_info);
	if (sym->st_size)
		r += 4;
	if (type == STT_FUNC || type == STT_GNU_IFUNC)
		r += 2;
	if (bind != STB_LOCAL)
		r += 1;
	return r;
}

static unsigned name_cost(const char *n)
{
	unsigned under = 0;
	while (n[under] == '_')
		under++;
	const char *at = strchr(n, '@');
	unsigned c = under * 4;
	if (strncmp(n, "__GI_", 5) == 0)
		c += 16; /* glibc's internal aliases */
	if (strchr(n, '.'))
		c += 2; /* foo.localalias, foo.part.0 */
	if (at && at[1] != '@')
		c += 1; /* a non-default version */
	return c;
}

/* Among aliases, best first: the highest rank, then the lowest name
 * cost, then the shortest name; computed once per symbol, not per
 * comparison (the sort of libc's symbols took 0.9 ms with them in the
 * comparison, most of a short process's dump), and the name's part only
 * for aliases. */
static uint32_t sym_order_rank(const GElf_Sym *sym)
{
	return (7 - sym_rank(sym)) << 29;
}

/* The name's part of the order, added only where aliases share an
 * address (most symbols have an address of their own). */
static uint32_t sym_order_name(const char *name)
{
	uint32_t cost = name_cost(name);
	size_t len = strlen(name);
	return ((cost < 0x1fff ? cost : 0x1fff) << 16) | (len < 0xffff ? (uint32_t)len : 0xffff);
}

static int sym_cmp(const void *pa, const void *pb)
{
	const sym_t *a = pa, *b = pb;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	if (a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Sorts v[0..k) as qsort(sym_cmp) would, once every order is complete:
 * by address with a stable LSD radix sort (bytes all keys share are
 * skipped), then each run of one address, its orders completed with the
 * names' part, by sym_cmp, an insertion sort over a few aliases. qsort
 * took 0.55 ms for libc's 6800 function symbols at a short process's
 * exit dump, this 0.18 ms. */
static void sort_symbols(sym_t *v, size_t k)
{
	sym_t *tmp = k > 1 ? malloc(k * sizeof *tmp) : NULL;
	if (!tmp) {
		for (size_t i = 0; i < k; i++)
			v[i].order |= sym_order_name(v[i].name);
		if (k > 1)
			qsort(v, k, sizeof *v, sym_cmp);
		return;
	}
	sym_t *src = v, *dst = tmp;
	for (unsigned shift = 0; shift < 64; shift += 8) {
		size_t count[256] = { 0 };
		for (size_t i = 0; i < k; i++)
			count[(src[i].lo >> shift) & 255]++;
		if (count[(src[0].lo >> shift) & 255] == k)
			continue;
		size_t pos = 0;
		for (unsigned b = 0; b < 256; b++) {
			size_t c = count[b];
			count[b] = pos;
			pos += c;
		}
		for (size_t i = 0; i < k; i++)
			dst[count[(src[i].lo >> shift) & 255]++] = src[i];
		sym_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, k * sizeof *v);
	free(tmp);
	for (size_t i = 0; i < k;) {
		size_t end = i + 1;
		while (end < k && v[end].lo == v[i].lo)
			end++;
		for (size_t a = i; a < end && end - i > 1; a++)
			v[a].order |= sym_order_name(v[a].name);
		for (size_t a = i + 1; a < end; a++)
			for (size_t b = a; b > i && sym_cmp(&v[b - 1], &v[b]) > 0; b--) {
				sym_t t = v[b];
				v[b] = v[b - 1];
				v[b - 1] = t;
			}
		i = end;
	}
}

/* End of the section holding a sizeless symbol, at run-time addresses. */
static uint64_t section_end(Elf *elf, GElf_Word shndx, Dwarf_Addr bias, uint64_t dflt)
{
	Elf_Scn *scn = elf ? dw.elf_getscn(elf, shndx) : NULL;
	GElf_Shdr sh;
	if (!scn || !dw.gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC))
		return dflt;
	return sh.sh_addr + sh.sh_size + bias;
}

/* A module's symbol table as its ELF data, read directly: libdw's
 * dwfl_module_getsym_info costs about 100 ns a symbol (it finds the
 * table, copies the symbol, looks up its section), most of what reading
 * libc's 10,000 symbols cost a short process's dump. Used only where
 * libdw's table is one section of 64-bit native symbols whose count is
 * libdw's, and where 64 symbols spread over it read the same both ways
 * (name, address, section, size, type): else, and for a symbol with an
 * extended section index, libdw's answer. */
typedef struct {
	const Elf64_Sym *syms;  /* NULL: ask libdw */
	size_t n;
	const char *strs;       /* the string table's data */
	size_t strs_len;
	Elf *elf;
	Dwarf_Addr bias;
} raw_symtab_t;

/* A symbol as a table entry, if it is a function symbol (or a sizeless
 * label) that can hold this mapping's addresses; addr is its run-time
 * address, and elf, shndx and bias find a sizeless one's section. */
static bool make_entry(const cprof_mapping_t *m, const char *name, uint64_t addr,
		       const GElf_Sym *sym, GElf_Word shndx, Elf *elf, Dwarf_Addr bias, sym_t *out)
{
	unsigned type = GELF_ST_TYPE(sym->st_info);
	if (!name || !name[0] || shndx == SHN_UNDEF || shndx == SHN_ABS ||
	    (type != STT_FUNC && type != STT_GNU_IFUNC && type != STT_NOTYPE))
		return false;
	uint64_t end = sym->st_size ? addr + sym->st_size : addr + 1;
	if (addr >= m->limit || end <= m->start)
		return false;
	*out = (sym_t){
		.lo = addr,
		.hi = sym->st_size ? end : section_end(elf, shndx, bias, m->limit),
		.name = name,
		.order = sym_order_rank(sym),
		.sized = sym->st_size != 0,
	};
	return true;
}

static const char *raw_name(const raw_symtab_t *rt, const Elf64_Sym *sym)
{
	return sym->st_name < rt->strs_len ? rt->strs + sym->st_name : NULL;
}

/* Symbol i of the module as a table entry (make_entry), read directly or,
 * without a direct table and for an extended section index, by libdw. */
static bool symbol_entry(mapping_state_t *ms, const cprof_mapping_t *m, const raw_symtab_t *rt,
			 int i, sym_t *out)
{
	if (!rt->syms || rt->syms[i].st_shndx == SHN_XINDEX) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		Elf *elf;
		Dwarf_Addr bias;
		const char *name =
			dw.dwfl_module_getsym_info(ms->mod, i, &sym, &addr, &shndx, &elf, &bias);
		return make_entry(m, name, addr, &sym, shndx, elf, bias, out);
	}
	const Elf64_Sym *raw = &rt->syms[i];
	GElf_Sym sym = { .st_info = raw->st_info, .st_size = raw->st_size };
	return make_entry(m, raw_name(rt, raw), raw->st_value + rt->bias, &sym, raw->st_shndx,
			  rt->elf, rt->bias, out);
}

/* rt->syms stays NULL unless the direct reading is libdw's own table. */
static void raw_symtab_open(mapping_state_t *ms, int n, raw_symtab_t *rt)
{
	*rt = (raw_symtab_t){ 0 };
	GElf_Sym sym;
	GElf_Addr addr;
	GElf_Word shndx;
	Elf *elf = NULL;
	Dwarf_Addr bias = 0;
	GElf_Ehdr eh;
	if (n < 2 || !dw.dwfl_module_getsym_info(ms->mod, 1, &sym, &addr, &shndx, &elf, &bias) ||
	    !elf || !dw.gelf_getehdr(elf, &eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB
										: ELFDATA2MSB) ||
	    (eh.e_type != ET_DYN && eh.e_type != ET_EXEC))
		return;
	Elf_Data *syms = NULL, *strs = NULL;
	for (Elf_Scn *scn = NULL; (scn = dw.elf_nextscn(elf, scn)) != NULL;) {
		GElf_Shdr sh;
		if (!dw.gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
		    sh.sh_entsize != sizeof(Elf64_Sym) || sh.sh_size / sizeof(Elf64_Sym) != (size_t)n)
			continue;
		Elf_Scn *str = dw.elf_getscn(elf, sh.sh_link);
		syms = dw.elf_getdata(scn, NULL);
		strs = str ? dw.elf_getdata(str, NULL) : NULL;
		break;
	}
	/* A string table that ends in a NUL: every name inside it ends. */
	if (!syms || !strs || !syms->d_buf || !strs->d_buf || !strs->d_size ||
	    ((const char *)strs->d_buf)[strs->d_size - 1] != '\0' ||
	    syms->d_size < (size_t)n * sizeof(Elf64_Sym) ||
	    ((uintptr_t)syms->d_buf & (_Alignof(Elf64_Sym) - 1)))
		return;
	raw_symtab_t t = { syms->d_buf, (size_t)n, strs->d_buf, strs->d_size, elf, bias };
	for (int k = 0; k < 64; k++) {
		int i = 1 + (int)((int64_t)(n - 1) * k / 64);
		Elf *e = NULL;
		Dwarf_Addr b = 0;
		const char *name = dw.dwfl_module_getsym_info(ms->mod, i, &sym, &addr, &shndx, &e, &b);
		const Elf64_Sym *raw = &t.syms[i];
		const char *rname = raw_name(&t, raw);
		if (e != elf || b != bias || !name != !rname || (name && strcmp(name, rname) != 0) ||
		    raw->st_shndx == SHN_XINDEX || shndx != raw->st_shndx ||
		    sym.st_size != raw->st_size || sym.st_info != raw->st_info ||
		    (shndx != SHN_UNDEF && shndx != SHN_ABS && addr != raw->st_value + bias))
			return;
	}
	*rt = t;
}

/* One entry per address (the best alias); sizeless ones end where the
 * next entry starts, or with their section. */
static size_t finish_symbols(sym_t *v, size_t k)
{
	size_t j = 0;
	for (size_t i = 0; i < k; i++)
		if (j == 0 || v[j - 1].lo != v[i].lo)
			v[j++] = v[i];
	for (size_t i = 0; i + 1 < j; i++)
		if (!v[i].sized && v[i + 1].lo < v[i].hi)
			v[i].hi = v[i + 1].lo;
	return j;
}

static void build_all_symbols(mapping_state_t *ms, const cprof_mapping_t *m,
			      const raw_symtab_t *rt, int n)
{
	/* Grown as needed: most of a library's symbols are not functions of
	 * its text, and untouched pages are not faulted in. */
	sym_t *v = NULL;
	size_t k = 0, cap = 0;
	for (int i = 1; i < n; i++) {
		sym_t e;
		if (!symbol_entry(ms, m, rt, i, &e))
			continue;
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 512;
			sym_t *t = realloc(v, ncap * sizeof *t);
			if (!t)
				break;
			v = t;
			cap = ncap;
		}
		v[k++] = e;
	}
	if (!v)
		return;
	sort_symbols(v, k);
	ms->syms = v;
	ms->nsyms = finish_symbols(v, k);
}

/* ---- the table for the wanted addresses alone --------------------------
 * A short process's dump looks up a few dozen addresses in libc, whose
 * table of 6,800 function symbols (2 x 218 KiB to sort, faulted in page
 * by page) cost 1 ms of a 1.4 ms profile build. find_symbol looks at most
 * WINDOW entries below an address, so for a sorted set of wanted
 * addresses W only the WINDOW highest distinct addresses of symbols in
 * each gap (W[j-1], W[j]] can matter: with the gaps below, they are the
 * WINDOW highest at or below W[j]. One pass over the symbols keeps them,
 * the best alias at each address as the sort would; the concatenated
 * gaps are the table, and find_symbol answers for every wanted address
 * exactly as from the whole table. A sizeless entry's end (the next
 * entry) may lie further than in the whole table, but never at or below
 * an address it is the closest symbol to. */
#define WINDOW 16 /* find_symbol's look below an address, in entries */
#define WANT_MAX 4096

typedef struct {
	sym_t e[WINDOW]; /* ascending by lo, distinct */
	unsigned n;
} gap_t;

/* a before b among aliases at one address, as sort_symbols orders them. */
static bool alias_before(const sym_t *a, const sym_t *b)
{
	uint32_t rank = 7u << 29;
	sym_t x = *a, y = *b;
	x.order = (x.order & rank) | sym_order_name(x.name);
	y.order = (y.order & rank) | sym_order_name(y.name);
	return sym_cmp(&x, &y) < 0;
}

static void gap_add(gap_t *g, const sym_t *e)
{
	unsigned i = g->n;
	while (i > 0 && g->e[i - 1].lo > e->lo)
		i--;
	if (i > 0 && g->e[i - 1].lo == e->lo) {
		if (alias_before(e, &g->e[i - 1]))
			g->e[i - 1] = *e;
		return;
	}
	if (g->n < WINDOW) {
		memmove(&g->e[i + 1], &g->e[i], (g->n - i) * sizeof *e);
		g->e[i] = *e;
		g->n++;
		return;
	}
	if (i == 0)
		return; /* below the WINDOW kept */
	memmove(&g->e[0], &g->e[1], (i - 1) * sizeof *e);
	g->e[i - 1] = *e;
}

static int cmp_uintptr(const void *pa, const void *pb)
{
	uintptr_t a = *(const uintptr_t *)pa, b = *(const uintptr_t *)pb;
	return a < b ? -1 : a > b;
}

/* Sorts the wanted addresses and drops repeats. */
static void want_sort(wanted_t *w)
{
	if (w->sorted == w->n)
		return;
	qsort(w->v, w->n, sizeof *w->v, cmp_uintptr);
	size_t j = 0;
	for (size_t i = 0; i < w->n; i++)
		if (j == 0 || w->v[j - 1] != w->v[i])
			w->v[j++] = w->v[i];
	w->n = w->sorted = j;
}

/* The first of the sorted v[0..n) that is >= a; n when none. */
static size_t lower_bound(const uintptr_t *v, size_t n, uintptr_t a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool sorted_has(const uintptr_t *v, size_t n, uintptr_t a)
{
	size_t i = lower_bound(v, n, a);
	return i < n && v[i] == a;
}

/* false: no memory (the whole table will be read). */
static bool want_add(wanted_t *w, uintptr_t address)
{
	if (w->n == w->cap) {
		if (w->sorted < w->n) {
			want_sort(w); /* repeats out before growing */
			if (w->n < w->cap)
				goto add;
		}
		size_t cap = w->cap ? w->cap * 2 : 64;
		uintptr_t *t = cap <= WANT_MAX ? realloc(w->v, cap * sizeof *t) : NULL;
		if (!t) {
			w->overflow = true;
			return false;
		}
		w->v = t;
		w->cap = cap;
	}
add:
	w->v[w->n++] = address;
	return true;
}

/* false: no memory, or not worth it (the whole table is smaller). */
static bool build_wanted_symbols(mapping_state_t *ms, const cprof_mapping_t *m,
				 const raw_symtab_t *rt, int n)
{
	wanted_t *w = &ms->want;
	want_sort(w);
	if (w->overflow || !w->n || w->n * WINDOW > (size_t)n)
		return false;
	gap_t *gaps = calloc(w->n, sizeof *gaps);
	if (!gaps)
		return false;
	uintptr_t last = w->v[w->n - 1];
	for (int i = 1; i < n; i++) {
		/* Read directly, a symbol above the last wanted address or below
		 * its gap's full window goes before its name is looked at (the
		 * string table is the larger part of what the pass touches). */
		const Elf64_Sym *raw = rt->syms ? &rt->syms[i] : NULL;
		uint64_t at = raw ? raw->st_value + rt->bias : 0;
		if (raw && at > last)
			continue;
		sym_t e;
		if (!raw && (!symbol_entry(ms, m, rt, i, &e) || e.lo > last))
			continue;
		if (!raw)
			at = e.lo;
		gap_t *g = &gaps[lower_bound(w->v, w->n, at)]; /* the first wanted >= at */
		if (raw && ((g->n == WINDOW && at < g->e[0].lo) || !symbol_entry(ms, m, rt, i, &e)))
			continue;
		gap_add(g, &e);
	}
	size_t k = 0;
	for (size_t j = 0; j < w->n; j++)
		k += gaps[j].n;
	sym_t *v = malloc((k ? k : 1) * sizeof *v);
	if (!v) {
		free(gaps);
		return false;
	}
	k = 0;
	for (size_t j = 0; j < w->n; j++) {
		memcpy(&v[k], gaps[j].e, gaps[j].n * sizeof *v);
		k += gaps[j].n;
	}
	free(gaps);
	ms->syms = v;
	ms->nsyms = finish_symbols(v, k);
	ms->partial = true;
	ms->covered = w->v; /* what is told from now on is new */
	ms->ncovered = w->n;
	*w = (wanted_t){ 0 };
	return true;
}

static void build_symbols(mapping_state_t *ms, const cprof_mapping_t *m)
{
	ms->syms_built = true;
	ms->partial = false;
	int n = dw.dwfl_module_getsymtab(ms->mod);
	if (n <= 1)
		return;
	raw_symtab_t rt;
	raw_symtab_open(ms, n, &rt);
	if (!build_wanted_symbols(ms, m, &rt, n))
		build_all_symbols(ms, m, &rt, n);
}

/* Can the table answer for addr: every address, or addr was wanted
 * before it was made. Else it is made again: for the wanted addresses,
 * those it answered for and those told since, if addr is one of them;
 * else whole. */
static void symbols_for(mapping_state_t *ms, const cprof_mapping_t *m, uintptr_t addr)
{
	if (ms->syms_built && (!ms->partial || sorted_has(ms->covered, ms->ncovered, addr)))
		return;
	wanted_t *w = &ms->want;
	if (ms->syms_built) {
		free(ms->syms);
		ms->syms = NULL;
		ms->nsyms = 0;
		for (size_t i = 0; i < ms->ncovered && !w->overflow; i++)
			want_add(w, ms->covered[i]);
		free(ms->covered);
		ms->covered = NULL;
		ms->ncovered = 0;
	}
	if (w->n) {
		want_sort(w);
		if (!sorted_has(w->v, w->n, addr))
			w->overflow = true; /* looked up unannounced */
	}
	build_symbols(ms, m);
}

void cprof_symbolizer_want(cprof_symbolizer_t *s, uintptr_t address)
{
	if (address < CPROF_FRAME_PSEUDO_MAX)
		return;
	int m = find_mapping(s, address);
	if (m < 0)
		return;
	mapping_state_t *ms = &s->mstate[m];
	wanted_t *w = &ms->want;
	if (w->overflow || (ms->syms_built && !ms->partial))
		return;
	if ((w->n && w->v[w->n - 1] == address) || sorted_has(w->v, w->sorted, address) ||
	    sorted_has(ms->covered, ms->ncovered, address))
		return; /* a stack's frames repeat often */
	want_add(w, address);
}

static const char *find_symbol(const mapping_state_t *ms, uint64_t addr)
{
	size_t lo = 0, hi = ms->nsyms;
	while (lo < hi) { /* first symbol above addr */
		size_t mid = lo + (hi - lo) / 2;
		if (ms->syms[mid].lo <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	const sym_t *closest = &ms->syms[lo - 1];
	/* A sized symbol containing addr wins; look a few back for one
	 * enclosing labels inside it. */
	for (size_t i = lo, steps = 0; i > 0 && steps < WINDOW; i--, steps++) {
		const sym_t *c = &ms->syms[i - 1];
		if (c->sized && addr < c->hi)
			return c->name;
	}
	return !closest->sized && addr < closest->hi ? closest->name : NULL;
}

/* ---- function index per compile unit ----------------------------------
 * dwarf_getscopes walks every DIE of the unit for each address, types
 * included: tens of microseconds a lookup in a unit that includes a few
 * headers. So the ranges of a unit's functions are collected and sorted
 * once, and the inline chain is found by descending from the function. */

static void add_fn_ranges(cu_index_t *ci, size_t *cap, Dwarf_Die *die)
{
	Dwarf_Addr base, start, end;
	ptrdiff_t off = 0;
	while ((off = dw.dwarf_ranges(die, off, &base, &start, &end)) > 0) {
		if (start >= end)
			continue;
		if (ci->n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 64;
			fn_range_t *t = realloc(ci->v, ncap * sizeof *t);
			if (!t)
				return;
			ci->v = t;
			*cap = ncap;
		}
		ci->v[ci->n++] = (fn_range_t){ .lo = start, .hi = end, .die = *die };
	}
}

static void collect_fns(cu_index_t *ci, size_t *cap, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	if (depth > 8 || dw.dwarf_child(parent, &child) != 0)
		return;
	do {
		int tag = dw.dwarf_tag(&child);
		if (tag == DW_TAG_subprogram)
			add_fn_ranges(ci, cap, &child);
		else if (tag == DW_TAG_namespace || tag == DW_TAG_module)
			collect_fns(ci, cap, &child, depth + 1);
	} while (dw.dwarf_siblingof(&child, &child) == 0);
}

static int fn_range_cmp(const void *pa, const void *pb)
{
	const fn_range_t *a = pa, *b = pb;
	return a->lo < b->lo ? -1 : a->lo > b->lo;
}

static size_t cu_hash(int mapping, uintptr_t key)
{
	return hash_addr(key ^ ((uint64_t)mapping << 48));
}

static const cu_index_t *get_cu_index(cprof_symbolizer_t *s, int mapping, Dwarf_Die *cudie)
{
	uintptr_t key = (uintptr_t)cudie->addr;
	if (s->cus_used * 2 >= s->cus_cap) {
		size_t cap = s->cus_cap ? s->cus_cap * 2 : 256;
		cu_index_t *t = calloc(cap, sizeof *t);
		if (!t)
			return NULL;
		for (size_t i = 0; i < s->cus_cap; i++) {
			if (!s->cus[i].used)
				continue;
			size_t j = cu_hash(s->cus[i].mapping, s->cus[i].cu_key) & (cap - 1);
			while (t[j].used)
				j = (j + 1) & (cap - 1);
			t[j] = s->cus[i];
		}
		free(s->cus);
		s->cus = t;
		s->cus_cap = cap;
	}
	size_t mask = s->cus_cap - 1;
	size_t j = cu_hash(mapping, key) & mask;
	for (; s->cus[j].used; j = (j + 1) & mask)
		if (s->cus[j].mapping == mapping && s->cus[j].cu_key == key)
			return &s->cus[j];
	cu_index_t *ci = &s->cus[j];
	*ci = (cu_index_t){ .mapping = mapping, .cu_key = key, .used = true };
	s->cus_used++;
	size_t cap = 0;
	collect_fns(ci, &cap, cudie, 0);
	qsort(ci->v, ci->n, sizeof *ci->v, fn_range_cmp);
	return ci;
}

/* The outermost function DIE whose ranges hold pc, from the index. */
static bool find_fn(const cu_index_t *ci, Dwarf_Addr pc, Dwarf_Die *out)
{
	size_t lo = 0, hi = ci->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ci->v[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo, steps = 0; i > 0 && steps < 4; i--, steps++)
		if (pc < ci->v[i - 1].hi) {
			*out = ci->v[i - 1].die;
			return true;
		}
	return false;
}

static bool is_scope_tag(int tag)
{
	return tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block ||
	       tag == DW_TAG_subprogram || tag == DW_TAG_try_block ||
	       tag == DW_TAG_catch_block || tag == DW_TAG_entry_point;
}

/* The child of parent whose ranges hold pc, looking through blocks that
 * have no ranges of their own. */
static bool child_with_pc(Dwarf_Die *parent, Dwarf_Addr pc, Dwarf_Die *out, int depth)
{
	Dwarf_Die child;
	if (depth > 4 || dw.dwarf_child(parent, &child) != 0)
		return false;
	do {
		int tag = dw.dwarf_tag(&child);
		if (!is_scope_tag(tag))
			continue;
		if (dw.dwarf_haspc(&child, pc) > 0) {
			*out = child;
			return true;
		}
		if (tag == DW_TAG_lexical_block &&
		    !dw.dwarf_hasattr(&child, DW_AT_low_pc) &&
		    !dw.dwarf_hasattr(&child, DW_AT_ranges) &&
		    child_with_pc(&child, pc, out, depth + 1))
			return true;
	} while (dw.dwarf_siblingof(&child, &child) == 0);
	return false;
}

/* Scopes holding pc, innermost first, ending at the outer function: from
 * the index when it knows the function, else from dwarf_getscopes.
 * Returns how many, 0 when no function DIE holds pc. */
static int scopes_for(cprof_symbolizer_t *s, int mapping, Dwarf_Die *cudie,
		      Dwarf_Addr pc, Dwarf_Die *out)
{
	const cu_index_t *ci = get_cu_index(s, mapping, cudie);
	Dwarf_Die *path = s->scratch + MAX_SCOPES;
	int n = 0;
	if (ci && find_fn(ci, pc, &path[0])) {
		n = 1;
		while (n < MAX_SCOPES && child_with_pc(&path[n - 1], pc, &path[n], 0))
			n++;
		for (int i = 0; i < n; i++)
			out[i] = path[n - 1 - i];
		return n;
	}
	/* Not in the index (a function in a class or partial unit, ...). */
	Dwarf_Die *scopes = NULL, *chain = NULL;
	int nscopes = dw.dwarf_getscopes(cudie, pc, &scopes);
	/* dwarf_getscopes continues from an inlined instance into its
	 * abstract definition's scopes; the physical parents of the
	 * innermost scope are what gives the chain of callers. */
	int nchain = nscopes > 0 ? dw.dwarf_getscopes_die(&scopes[0], &chain) : 0;
	for (int i = 0; i < nchain && n < MAX_SCOPES; i++) {
		out[n++] = chain[i];
		if (dw.dwarf_tag(&chain[i]) == DW_TAG_subprogram)
			break;
	}
	free(scopes);
	free(chain);
	return n;
}

static mapping_state_t *get_module(cprof_symbolizer_t *s, Dwfl *d, int m, uintptr_t addr)
{
	mapping_state_t *ms = &s->mstate[m];
	if (!ms->mod_tried) {
		ms->mod_tried = true;
		ms->mod = dw.dwfl_addrmodule(d, addr);
	}
	if (ms->mod)
		symbols_for(ms, &s->mappings[m], addr);
	return ms->mod ? ms : NULL;
}

/* Line tables often name files relative to the compilation directory
 * ("src/x.c"); pprof -list and editors need the whole path, which does not
 * depend on where the profile is read. */
static void absolute_files(cprof_symbolizer_t *s, Dwarf_Die *cudie, result_t *r)
{
	Dwarf_Attribute a;
	const char *comp_dir = NULL;
	if (cudie && dw.dwarf_attr(cudie, DW_AT_comp_dir, &a))
		comp_dir = dw.dwarf_formstring(&a);
	if (!comp_dir || comp_dir[0] != '/')
		return;
	for (unsigned i = 0; i < r->n; i++) {
		const char *file = r->frames[i].file;
		if (!file || !*file || file[0] == '/')
			continue;
		char path[4096];
		int n = snprintf(path, sizeof path, "%s/%s", comp_dir, file);
		if (n > 0 && (size_t)n < sizeof path) {
			const char *copy = intern(s, path);
			if (copy)
				r->frames[i].file = copy;
		}
	}
}

/* ---- which modules get DWARF (CPROF_LINES) ---------------------------
 * Opening a module's DWARF makes libdw decompress its debug sections
 * whole: for libc's separate debug file (libc6-dbg, compressed) about
 * 30 ms of CPU at the first line looked up in libc, which was most of
 * what a short process paid at exit (perf: dwarf_begin_elf ->
 * elf_compress -> inflate). Function names need none of it: they come
 * from the symbol table, the debug file's .symtab included, which is not
 * compressed. So by default ("program") the lines and inline frames of a
 * system library whose DWARF would come from a separate debug file are
 * left out; pprof and addr2line can still add them when the profile is
 * read, since such a mapping says it has no line numbers. */

static bool system_library_path(const char *path)
{
	static const char *const dirs[] = { "/lib/", "/lib64/", "/lib32/", "/usr/lib/",
					    "/usr/lib64/", "/usr/lib32/" };
	for (unsigned i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
		if (strncmp(path, dirs[i], strlen(dirs[i])) == 0)
			return true;
	return false;
}

/* Whether the module's own file holds DWARF (then reading it costs what
 * the owner of the file chose to ship, and no separate file is opened). */
static bool module_has_own_dwarf(Dwfl_Module *mod)
{
	Dwarf_Addr bias;
	Elf *elf = dw.dwfl_module_getelf(mod, &bias);
	size_t shstrndx;
	if (!elf || dw.elf_getshdrstrndx(elf, &shstrndx) != 0)
		return false;
	for (Elf_Scn *scn = dw.elf_nextscn(elf, NULL); scn; scn = dw.elf_nextscn(elf, scn)) {
		GElf_Shdr sh;
		if (!dw.gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
			continue;
		const char *name = dw.elf_strptr(elf, shstrndx, sh.sh_name);
		if (name && (strcmp(name, ".debug_info") == 0 || strcmp(name, ".zdebug_info") == 0))
			return true;
	}
	return false;
}

/* The file this code is in (the shim, in a profiled process): its frames
 * are the wrappers a sample went through (pthread_join, malloc), named
 * from its symbol table; its source lines are the profiler's own, no use
 * to the program's author, and its DWARF cost 0.7 ms a dump to open. */
static bool own_file(const cprof_symbolizer_t *s, int m)
{
	int own = find_mapping(s, (uintptr_t)cprof_symbolize);
	return own >= 0 && strcmp(s->mappings[own].path, s->mappings[m].path) == 0;
}

const char *(*cprof_symbolize_own_entry)(uintptr_t address);

/* A wrapper's entry, the leaf of every heap, mutex and block stack,
 * named by the shim's own table (cprof_symbolize_own_entry): a dump whose
 * stacks hold nothing else of the shim never opens its file (1.1 MiB
 * mapped, 1,461 symbols read). The name is the one its symbol table
 * gives: the exported wrapper is the entry's global, sized alias. */
static const char *own_entry_name(const cprof_symbolizer_t *s, int m, uintptr_t address)
{
	return own_file(s, m) ? cprof_symbolize_own_entry(address) : NULL;
}

static bool dwarf_wanted(cprof_symbolizer_t *s, int m, mapping_state_t *ms)
{
	if (ms->dwarf < 0) {
		switch (cprof_config.lines) {
		case CPROF_LINES_ALL:
			ms->dwarf = 1;
			break;
		case CPROF_LINES_NONE:
			ms->dwarf = 0;
			break;
		default:
			if (ms->main_program)
				ms->dwarf = 1;
			else if (own_file(s, m))
				ms->dwarf = 0;
			else
				ms->dwarf = !system_library_path(s->mappings[m].path) ||
					    module_has_own_dwarf(ms->mod);
		}
	}
	return ms->dwarf > 0;
}

static void lookup_dladdr(uintptr_t addr, result_t *r)
{
	Dl_info info;
	frame_t *f = &r->frames[r->n++];
	*f = (frame_t){ 0 };
	if (dladdr((void *)addr, &info) && info.dli_sname && info.dli_sname[0])
		f->name = info.dli_sname;
	/* The vDSO exports each function twice (gettimeofday and
	 * __vdso_gettimeofday); the plain name, as with other aliases. */
	if (f->name && strncmp(f->name, "__vdso_", 7) == 0 && f->name[7])
		f->name += 7;
}

static void lookup_libdw(cprof_symbolizer_t *s, Dwfl *d, int m, uintptr_t addr,
			 result_t *r)
{
	/* No file for libdw to read (the vDSO): the loader's names. */
	mapping_state_t *ms = s->mappings[m].path[0] == '/' ? get_module(s, d, m, addr) : NULL;
	if (!ms) {
		lookup_dladdr(addr, r);
		return;
	}
	Dwfl_Module *mod = ms->mod;
	bool with_dwarf = dwarf_wanted(s, m, ms);

	const char *symname = find_symbol(ms, addr);
	/* Symbol tables of separate debug files carry the symbol version
	 * ("clock_gettime@@GLIBC_2.17"); pprof wants the plain name. No
	 * mangled C++ name contains '@'. */
	const char *at = symname ? strchr(symname + 1, '@') : NULL;
	if (at && (size_t)(at - symname) < sizeof r->symbuf) {
		memcpy(r->symbuf, symname, (size_t)(at - symname));
		r->symbuf[at - symname] = '\0';
		symname = r->symbuf;
	}

	const char *srcfile = NULL;
	int srcline = 0;
	Dwfl_Line *ln = with_dwarf ? dw.dwfl_module_getsrc(mod, addr) : NULL;
	if (ln)
		srcfile = dw.dwfl_lineinfo(ln, NULL, &srcline, NULL, NULL, NULL);
	if (srcline < 0)
		srcline = 0;

	Dwarf_Addr bias = 0;
	Dwarf_Die *cudie = with_dwarf ? dw.dwfl_module_addrdie(mod, addr, &bias) : NULL;
	Dwarf_Die *chain = s->scratch;
	int nchain = 0;
	Dwarf_Die split;
	uint8_t unit_type;
	if (cudie && dw.dwarf_cu_info(cudie->cu, NULL, &unit_type, NULL, &split,
				      NULL, NULL, NULL) == 0 &&
	    unit_type == DW_UT_skeleton && split.addr)
		cudie = &split; /* -gsplit-dwarf: the functions are in the .dwo */
	if (cudie && chain) {
		r->dwarf = true;
		nchain = scopes_for(s, m, cudie, addr - bias, chain);
	}

	/* frames: innermost first; an inlined_subroutine's call site is the
	 * line of the frame that follows it. */
	const char *file = srcfile;
	int64_t line = srcline;
	bool outer_done = false;
	for (int i = 0; i < nchain && r->n < MAX_FRAMES; i++) {
		Dwarf_Die *die = &chain[i];
		int tag = dw.dwarf_tag(die);
		if (!is_function_tag(tag))
			continue;
		frame_t *f = &r->frames[r->n++];
		f->file = file;
		f->line = line;
		f->start_line = die_udata(die, DW_AT_decl_line, true);
		if (tag != DW_TAG_inlined_subroutine) {
			/* The real function: its name as the symbol table
			 * has it (mangled for C++), as pprof expects. */
			f->name = symname ? symname : die_name(die);
			outer_done = true;
			break;
		}
		f->name = die_name(die);
		file = die_call_file(die);
		line = die_udata(die, DW_AT_call_line, false);
	}
	if (!outer_done && r->n < MAX_FRAMES && (symname || r->n == 0)) {
		/* No DWARF for the function (or an inline chain without its
		 * outer subprogram): the symbol, with what the line table
		 * says. */
		frame_t *f = &r->frames[r->n++];
		f->name = symname;
		f->file = file;
		f->line = line;
		f->start_line = 0;
	}
	absolute_files(s, cudie, r);
}

static cache_entry_t *cache_slot(cprof_symbolizer_t *s, uintptr_t addr)
{
	size_t mask = s->cache_cap - 1;
	size_t j = hash_addr(addr) & mask;
	while (s->cache[j].addr && s->cache[j].addr != addr)
		j = (j + 1) & mask;
	return &s->cache[j];
}

static bool cache_grow(cprof_symbolizer_t *s)
{
	size_t cap = s->cache_cap ? s->cache_cap * 2 : 1024;
	cache_entry_t *old = s->cache;
	size_t oldcap = s->cache_cap;
	cache_entry_t *t = calloc(cap, sizeof *t);
	if (!t)
		return false;
	s->cache = t;
	s->cache_cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].addr)
			*cache_slot(s, old[i].addr) = old[i];
	free(old);
	return true;
}

static const cprof_line_t pseudo_lines[] = {
	{ "[cprof: unknown]", "[cprof: unknown]", "", 0, 0 },
	{ "[cprof: dropped]", "[cprof: dropped]", "", 0, 0 },
	{ "[cprof: truncated]", "[cprof: truncated]", "", 0, 0 },
	{ "[cprof: not unwound]", "[cprof: not unwound]", "", 0, 0 },
	{ "[cprof: no stack room]", "[cprof: no stack room]", "", 0, 0 },
	{ "[cprof: unsampled tail]", "[cprof: unsampled tail]", "", 0, 0 },
	{ "[cprof: not reached]", "[cprof: not reached]", "", 0, 0 },
	{ "[cprof: created by]", "[cprof: created by]", "", 0, 0 },
	{ "[cprof: no stack]", "[cprof: no stack]", "", 0, 0 },
};

void cprof_symbolize(cprof_symbolizer_t *s, uintptr_t address, cprof_symbol_t *out)
{
	*out = (cprof_symbol_t){ .mapping = -1, .nlines = 0, .lines = NULL };
	if (address < CPROF_FRAME_PSEUDO_MAX) {
		unsigned k = address <= CPROF_FRAME_LAST ? (unsigned)address : 0;
		out->nlines = 1;
		out->lines = &pseudo_lines[k];
		return;
	}

	if ((s->cache_used + 1) * 2 > s->cache_cap && !cache_grow(s)) {
		/* Out of memory: answer without caching. */
		out->mapping = find_mapping(s, address);
		return;
	}
	cache_entry_t *e = cache_slot(s, address);
	if (e->addr) {
		out->mapping = e->mapping;
		out->nlines = e->nlines;
		out->lines = e->lines;
		return;
	}

	int m = find_mapping(s, address);
	result_t r;
	r.n = 0;
	r.dwarf = false;
	const char *own_name = m >= 0 && cprof_symbolize_own_entry ? own_entry_name(s, m, address)
								   : NULL;
	if (own_name) {
		r.frames[r.n++] = (frame_t){ .name = own_name };
	} else if (m >= 0) {
		Dwfl *d = get_dwfl(s);
		if (d)
			lookup_libdw(s, d, m, address, &r);
		else
			lookup_dladdr(address, &r);
	}

	/* A location without a function has no line at all (nlines 0). */
	if (r.n == 1 && !r.frames[0].name)
		r.n = 0;
	cprof_line_t *lines = NULL;
	if (r.n) {
		lines = arena_alloc(&s->arena, r.n * sizeof *lines);
		if (!lines)
			r.n = 0;
	}
	bool has_file = r.n > 0, has_line = r.n > 0, has_func = r.n > 0;
	for (unsigned i = 0; i < r.n; i++) {
		const frame_t *f = &r.frames[i];
		const char *name = f->name ? intern_or_empty(s, f->name) : "??";
		lines[i] = (cprof_line_t){
			.name = name,
			.system_name = name,
			.file = intern_or_empty(s, f->file),
			.line = f->line,
			.start_line = f->start_line,
		};
		if (!f->name)
			has_func = false;
		if (!lines[i].file[0])
			has_file = false;
		if (lines[i].line <= 0)
			has_line = false;
	}

	if (m >= 0) {
		mapping_stats_t *st = &s->stats[m];
		st->lookups++;
		st->functions += has_func;
		st->filenames += has_file;
		st->lines += has_line;
		st->dwarf += r.dwarf;
	}

	e->addr = address;
	e->mapping = m;
	e->nlines = r.n;
	e->lines = lines;
	s->cache_used++;
	out->mapping = m;
	out->nlines = r.n;
	out->lines = lines;
}
