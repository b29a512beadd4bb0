/* http.c — the /debug/pprof endpoint (CPROF_HTTP), as Go's net/http/pprof.
 *
 * Owns the serving thread and everything it holds. The thread is made
 * with every signal blocked and no CPU timer (real_pthread_create), marks
 * itself busy (nothing it does is the program's), and moves into a
 * descriptor table of its own: unshare(CLONE_FILES | CLONE_FS), then it
 * closes every descriptor it inherited. Its sockets, libmicrohttpd's
 * epoll descriptor and the files it reads exist only in that table, so
 * the program can neither see them (/proc/PID/fd), close them (a daemon's
 * closefrom) nor have them reused under it, and a fork or exec of the
 * program carries none of them. Its umask is its own too, so a unix
 * socket is made 0600 without touching the program's. It keeps stderr
 * only until it has said where it serves; from then on 0, 1 and 2 are
 * /dev/null in its table, so a stray cprof_log on this thread cannot
 * write into a client's socket.
 *
 * libmicrohttpd (Debian's libmicrohttpd12) parses HTTP. It is dlopen'd by
 * this thread, only when CPROF_HTTP is set, and its few functions are
 * reached through a table; nothing is linked. It runs with no thread of
 * its own: this thread polls it (MHD_run_wait on epoll), so one thread
 * serves everything and builds one profile at a time. A CPU window
 * (profile?seconds=N) or a delta (heap?seconds=N) takes a snapshot,
 * suspends its connection and is resumed when its time is up, so two
 * clients at once are both served and nothing is started or stopped.
 *
 * Limits (the endpoint faces whatever can reach it): CPROF_HTTP_CONNECTIONS
 * connections at once (more get 503), 8 KiB of request headers (431), a
 * body only on symbol and at most 64 KiB (413), CPROF_HTTP_TIMEOUT seconds
 * to send a request, whatever the pace (a slow client's socket is shut
 * down), and one profile build at a time. Profile builds run concurrently
 * with the dumper's at most: both symbolize with their own symbolizer and
 * only read the stack table.
 */
#include "cprof_internal.h"
#include "http_route.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Types and prototypes only: nothing of libmicrohttpd is linked. */
#include <microhttpd.h>

#define MHD_SONAME "libmicrohttpd.so.12"
#define HEADERS_MAX 8192

#define CPROF_MHD_FUNCS(X)                  \
	X(MHD_start_daemon)                 \
	X(MHD_run_wait)                     \
	X(MHD_lookup_connection_value)      \
	X(MHD_get_connection_values_n)      \
	X(MHD_get_connection_info)          \
	X(MHD_queue_response)               \
	X(MHD_create_response_from_buffer)  \
	X(MHD_add_response_header)          \
	X(MHD_destroy_response)             \
	X(MHD_suspend_connection)           \
	X(MHD_resume_connection)

#define CPROF_MHD_MEMBER(name) __typeof__(name) *name;
static struct {
	CPROF_MHD_FUNCS(CPROF_MHD_MEMBER)
} mhd;
#undef CPROF_MHD_MEMBER

/* ---- connections and requests -------------------------------------- */

typedef struct conn_slot {
	struct MHD_Connection *connection;
	int fd;
	bool used;
	bool over_limit;      /* came when the cap was reached: 503 */
	bool waiting;         /* its request waits for a window: no deadline */
	int64_t reading_since; /* CLOCK_MONOTONIC ns: the deadline's start */
} conn_slot_t;

typedef struct request {
	struct MHD_Connection *connection;
	conn_slot_t *slot;
	cprof_http_decision_t decision;
	bool answered;        /* a response is queued, or the window waits */
	bool cpu_window;      /* a profile?seconds=N window: cprof_cpu_demand(+1) */
	bool waiting;         /* suspended until `due` */
	bool due_now;         /* resumed: build and answer */
	int64_t due;          /* CLOCK_MONOTONIC ns */
	cprof_snapshot_t *base;
	char *body;           /* symbol: the POST body */
	size_t body_len;
	bool body_too_big;
	struct request *next_waiting;
} request_t;

static struct {
	struct MHD_Daemon *daemon;
	conn_slot_t *slots;
	unsigned nslots;      /* the cap plus room to answer 503 */
	unsigned active;
	request_t *waiting;   /* suspended windows */
	cprof_snapshot_t *delta_base[CPROF_HTTP_ROUTE_COUNT]; /* delta_*: last served */
	char token[256];
	size_t token_len;
	char where[160];      /* "127.0.0.1:41234", "unix:/path" */
} http;

static int64_t now_mono(void)
{
	return cprof_now_ns(CLOCK_MONOTONIC);
}

static conn_slot_t *slot_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return info ? (conn_slot_t *)info->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		for (unsigned i = 0; i < http.nslots; i++) {
			conn_slot_t *s = &http.slots[i];
			if (s->used)
				continue;
			const union MHD_ConnectionInfo *info =
				mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
			*s = (conn_slot_t){ .connection = c, .fd = info ? info->connect_fd : -1,
					    .used = true,
					    .reading_since = now_mono(),
					    .over_limit = http.active >= cprof_config.http_connections };
			http.active++;
			*socket_context = s;
			return;
		}
		*socket_context = NULL; /* cannot happen: MHD's own limit is nslots */
		return;
	}
	conn_slot_t *s = *socket_context;
	if (s && s->used) {
		s->used = false;
		http.active--;
	}
}

/* ---- responses --------------------------------------------------------- */

/* Sending the answer gets a timeout of its own. */
static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
	conn_slot_t *slot = slot_of(c);
	if (slot)
		slot->reading_since = now_mono();
	return mhd.MHD_queue_response(c, status, r);
}

/* Queues a response; `body` is malloc'd and handed over (NULL: copied
 * from `text`). */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
			       void *body, size_t len, const char *text, const char *disposition)
{
	struct MHD_Response *r;
	if (!text)
		text = "";
	if (body)
		r = mhd.MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	else
		r = mhd.MHD_create_response_from_buffer(strlen(text), (void *)text,
							MHD_RESPMEM_MUST_COPY);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	mhd.MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	mhd.MHD_add_response_header(r, "Content-Type", type);
	if (disposition)
		mhd.MHD_add_response_header(r, "Content-Disposition", disposition);
	enum MHD_Result rc = queue(c, status, r);
	mhd.MHD_destroy_response(r);
	return rc;
}

/* Go's serveError: text/plain, X-Go-Pprof: 1, the text and a newline. */
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *text,
				     const char *allow, bool close)
{
	char line[256];
	snprintf(line, sizeof line, "%s\n", text);
	struct MHD_Response *r =
		mhd.MHD_create_response_from_buffer(strlen(line), line, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	mhd.MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	mhd.MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	mhd.MHD_add_response_header(r, "X-Go-Pprof", "1");
	if (allow)
		mhd.MHD_add_response_header(r, "Allow", allow);
	if (status == 401)
		mhd.MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
	if (close)
		mhd.MHD_add_response_header(r, "Connection", "close");
	enum MHD_Result rc = queue(c, status, r);
	mhd.MHD_destroy_response(r);
	return rc;
}

/* ---- profiles ----------------------------------------------------------- */

static cprof_kind_t route_kind(cprof_http_route_t route)
{
	switch (route) {
	case CPROF_HTTP_PROFILE:
		return CPROF_KIND_CPU;
	case CPROF_HTTP_HEAP: case CPROF_HTTP_ALLOCS: case CPROF_HTTP_DELTA_HEAP:
		return CPROF_KIND_HEAP;
	case CPROF_HTTP_MUTEX: case CPROF_HTTP_DELTA_MUTEX:
		return CPROF_KIND_MUTEX;
	case CPROF_HTTP_BLOCK: case CPROF_HTTP_DELTA_BLOCK:
		return CPROF_KIND_BLOCK;
	case CPROF_HTTP_THREADS:
		return CPROF_KIND_THREADS;
	default:
		return CPROF_KIND_COUNT;
	}
}

static bool kind_served(cprof_kind_t kind)
{
	return kind < CPROF_KIND_COUNT && (atomic_load(&cprof_dump_kinds) & (1u << kind));
}

/* The in-use columns of a heap delta are the later moment's, as Go's. */
#define HEAP_KEEP_LATER ((1u << 2) | (1u << 3))

static enum MHD_Result serve_profile(request_t *r)
{
	cprof_http_route_t route = r->decision.route;
	cprof_kind_t kind = route_kind(route);
	cprof_pprof_options_t opt = { .base = r->base,
				      .addresses_only = cprof_config.http_addresses_only };
	cprof_snapshot_t *later = NULL;
	int64_t now = cprof_now_ns(CLOCK_REALTIME);
	bool delta_path = route == CPROF_HTTP_DELTA_HEAP || route == CPROF_HTTP_DELTA_MUTEX ||
			  route == CPROF_HTTP_DELTA_BLOCK;

	if (kind == CPROF_KIND_HEAP)
		opt.keep_later = HEAP_KEEP_LATER;
	if (route == CPROF_HTTP_ALLOCS)
		opt.default_type = "alloc_space";
	if (delta_path) {
		/* The change since the previous request to this path: build
		 * from a snapshot, which becomes the next request's base. */
		later = cprof_snapshot_take(kind, now);
		if (!later)
			return respond_error(r->connection, 500, "failed to collect profile", NULL,
					     false);
		opt.base = http.delta_base[route];
		opt.later = later;
	}
	if (kind == CPROF_KIND_CPU)
		opt.keep_later = 0;

	uint8_t *data = NULL;
	size_t len = 0;
	cprof_symbolizer_t *sym = cprof_symbolizer_new();
	int err = sym ? cprof_pprof_build_with(kind, sym, now, &opt, &data, &len) : -ENOMEM;
	cprof_symbolizer_free(sym);
	if (err < 0) {
		cprof_snapshot_free(later);
		return respond_error(r->connection, 500, "failed to collect profile", NULL, false);
	}
	if (delta_path) {
		cprof_snapshot_free(http.delta_base[route]);
		http.delta_base[route] = later;
	}
	char disposition[64];
	snprintf(disposition, sizeof disposition, "attachment; filename=\"%s%s\"",
		 cprof_http_route_name(route), r->base && route != CPROF_HTTP_PROFILE ? "-delta" : "");
	return respond(r->connection, 200, "application/octet-stream", data, len, NULL,
		       disposition);
}

/* ---- the small pages ---------------------------------------------------- */

/* debug=N on heap, allocs, mutex, block: Go's text form. */
static enum MHD_Result serve_text(request_t *r)
{
	char *text = NULL;
	size_t len = 0;
	cprof_symbolizer_t *sym = cprof_symbolizer_new();
	int err = sym ? cprof_pprof_text(route_kind(r->decision.route), sym, r->decision.debug, &text,
					   &len) : -ENOMEM;
	cprof_symbolizer_free(sym);
	if (err < 0)
		return respond_error(r->connection, 500, "failed to collect profile", NULL, false);
	return respond(r->connection, 200, "text/plain; charset=utf-8", text, len, NULL, NULL);
}

typedef struct text {
	char *p;
	size_t len, cap;
	bool oom;
} text_t;

static void text_add(text_t *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = 0;
}

static void text_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text_t *t, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0)
		text_add(t, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static enum MHD_Result respond_text(struct MHD_Connection *c, text_t *t, const char *type)
{
	if (t->oom) {
		free(t->p);
		return respond_error(c, 500, "out of memory", NULL, false);
	}
	if (!t->p)
		text_add(t, "", 0);
	return respond(c, 200, type, t->p, t->len, NULL, NULL);
}

static const struct {
	const char *name;
	cprof_kind_t kind;  /* CPROF_KIND_COUNT: no count */
	const char *description;
} index_rows[] = {
	{ "allocs", CPROF_KIND_HEAP, "A sampling of all past memory allocations" },
	{ "block", CPROF_KIND_BLOCK,
	  "Stack traces that led to blocking on synchronization primitives" },
	{ "cmdline", CPROF_KIND_COUNT, "The command line invocation of the current program" },
	{ "heap", CPROF_KIND_HEAP, "A sampling of memory allocations of live objects." },
	{ "mutex", CPROF_KIND_MUTEX, "Stack traces of holders of contended mutexes" },
	{ "profile", CPROF_KIND_COUNT,
	  "CPU profile. You can specify the duration in the seconds GET parameter. After you "
	  "get the profile file, use the go tool pprof command to investigate the profile." },
	{ "threads", CPROF_KIND_THREADS, "Stack traces of all current threads" },
};

/* Go's index page, with the profiles libcprof has (counts: stacks with a
 * non-zero value). */
static enum MHD_Result serve_index(struct MHD_Connection *c)
{
	text_t t = { 0 };
	static const char head[] =
		"<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n"
		"\tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n"
		"/debug/pprof/<br>\n<br>\nTypes of profiles available:\n<table>\n"
		"<thead><td>Count</td><td>Profile</td></thead>\n";
	text_add(&t, head, sizeof head - 1);
	size_t n = sizeof index_rows / sizeof index_rows[0];
	for (size_t i = 0; i < n; i++) {
		cprof_kind_t k = index_rows[i].kind;
		if (k < CPROF_KIND_COUNT && !kind_served(k))
			continue;
		if (strcmp(index_rows[i].name, "profile") == 0 && !kind_served(CPROF_KIND_CPU))
			continue;
		size_t count = k < CPROF_KIND_COUNT ? cprof_pprof_count(k) : 0;
		text_printf(&t, "<tr><td>%zu</td><td><a href='%s?debug=1'>%s</a></td></tr>\n", count,
			    index_rows[i].name, index_rows[i].name);
	}
	static const char middle[] = "</table>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n";
	text_add(&t, middle, sizeof middle - 1);
	for (size_t i = 0; i < n; i++)
		text_printf(&t, "<li><div class=profile-name>%s: </div> %s</li>\n",
			    index_rows[i].name, index_rows[i].description);
	static const char tail[] = "</ul>\n</p>\n</body>\n</html>";
	text_add(&t, tail, sizeof tail - 1);
	return respond_text(c, &t, "text/html; charset=utf-8");
}

/* /proc/self/cmdline, arguments separated by NUL bytes as Go's (without
 * the last NUL). Opened in this thread's own descriptor table. */
static enum MHD_Result serve_cmdline(struct MHD_Connection *c)
{
	text_t t = { 0 };
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char buf[4096];
		ssize_t n;
		while ((n = read(fd, buf, sizeof buf)) > 0)
			text_add(&t, buf, (size_t)n);
		close(fd);
	}
	if (t.len && t.p[t.len - 1] == 0)
		t.len--;
	return respond_text(c, &t, "text/plain; charset=utf-8");
}

typedef struct symbol_ctx {
	cprof_symbolizer_t *sym;
	text_t *out;
} symbol_ctx_t;

static void symbol_want(uint64_t address, void *p)
{
	cprof_symbolizer_want(((symbol_ctx_t *)p)->sym, (uintptr_t)address);
}

static void symbol_line(uint64_t address, void *p)
{
	symbol_ctx_t *ctx = p;
	cprof_symbol_t s;
	if (address < CPROF_FRAME_PSEUDO_MAX)
		return; /* our pseudo-frames are no code */
	cprof_symbolize(ctx->sym, (uintptr_t)address, &s);
	if (!s.nlines)
		return;
	/* The function the address is in: the outermost of the inlined
	 * chain, by the name in the symbol table (pprof demangles). */
	const cprof_line_t *line = &s.lines[s.nlines - 1];
	const char *name = line->system_name && *line->system_name ? line->system_name : line->name;
	text_printf(ctx->out, "%#lx %s\n", (unsigned long)address, name);
}

/* The pprof remote-symbolization protocol: "num_symbols: 1", then one
 * "0xADDR name" line per address of the POST body that has a name. */
static enum MHD_Result serve_symbol(request_t *r)
{
	text_t t = { 0 };
	text_printf(&t, "num_symbols: 1\n");
	if (r->body_len) {
		symbol_ctx_t ctx = { cprof_symbolizer_new(), &t };
		if (ctx.sym) {
			cprof_http_symbol_addresses(r->body, r->body_len, symbol_want, &ctx);
			cprof_http_symbol_addresses(r->body, r->body_len, symbol_line, &ctx);
			cprof_symbolizer_free(ctx.sym);
		}
	}
	return respond_text(r->connection, &t, "text/plain; charset=utf-8");
}

/* ---- the request handler ------------------------------------------------- */

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
				       size_t key_size, const char *value, size_t value_size)
{
	(void)kind;
	(void)key;
	(void)value;
	*(size_t *)cls += key_size + value_size + 4; /* ": " and CRLF */
	return MHD_YES;
}

static void wait_until(request_t *r, int64_t due)
{
	r->waiting = true;
	r->due = due;
	if (r->slot)
		r->slot->waiting = true;
	r->next_waiting = http.waiting;
	http.waiting = r;
	mhd.MHD_suspend_connection(r->connection);
}

/* First sight of a request (its headers are in): every check. An error
 * is answered at once (libmicrohttpd then closes the connection rather
 * than read a body nobody wants); a good request is served on the next
 * call, once libmicrohttpd has the whole request, so the connection can
 * be kept alive. */
static enum MHD_Result check_request(request_t *r, const char *url, const char *method)
{
	struct MHD_Connection *c = r->connection;
	r->answered = true;
	if (r->slot && r->slot->over_limit)
		return respond_error(c, 503, "too many connections to the profiling endpoint "
				     "(CPROF_HTTP_CONNECTIONS)", NULL, true);
	size_t header_bytes = strlen(url) + strlen(method) + 12;
	mhd.MHD_get_connection_values_n(c, MHD_HEADER_KIND, add_header_size, &header_bytes);
	if (header_bytes > HEADERS_MAX)
		return respond_error(c, 431, "request headers larger than 8 KiB", NULL, true);
	if (http.token_len) {
		const char *auth = mhd.MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								   "Authorization");
		if (!cprof_http_token_ok(auth, http.token, http.token_len))
			return respond_error(c, 401, "Unauthorized", NULL, false);
	}
	const char *length = mhd.MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							     "Content-Length");
	const char *encoding = mhd.MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							       "Transfer-Encoding");
	uint64_t declared = length ? strtoull(length, NULL, 10) : 0;
	cprof_http_request_t in = {
		.method = method,
		.path = url,
		.seconds = mhd.MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seconds"),
		.debug = mhd.MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "debug"),
		.has_body = declared > 0 || (encoding && strcasecmp(encoding, "identity") != 0),
		.body_length = declared,
		.max_seconds = cprof_config.http_max_seconds,
	};
	cprof_http_decide(&in, &r->decision);
	cprof_http_decision_t *d = &r->decision;
	if (d->status != 200)
		return respond_error(c, (unsigned)d->status, d->error, d->allow,
				     d->status == 413 || d->status == 431);
	cprof_kind_t kind = route_kind(d->route);
	if (kind < CPROF_KIND_COUNT && !kind_served(kind))
		return respond_error(c, 404, "profile not collected by this process (CPROF_PROFILES)",
				     NULL, false);
	r->answered = false;
	return MHD_YES;
}

/* The whole request is in and passed every check: answer, or wait. */
static enum MHD_Result serve_request(request_t *r)
{
	struct MHD_Connection *c = r->connection;
	cprof_http_decision_t *d = &r->decision;
	r->answered = true;
	switch (d->route) {
	case CPROF_HTTP_INDEX:
		return serve_index(c);
	case CPROF_HTTP_CMDLINE:
		return serve_cmdline(c);
	case CPROF_HTTP_SYMBOL:
		if (r->body_too_big)
			return respond_error(c, 413, "request body larger than 64 KiB", NULL, true);
		return serve_symbol(r);
	default:
		break;
	}
	bool delta_path = d->route == CPROF_HTTP_DELTA_HEAP || d->route == CPROF_HTTP_DELTA_MUTEX ||
			  d->route == CPROF_HTTP_DELTA_BLOCK;
	if (d->debug != 0 && d->route != CPROF_HTTP_PROFILE && !delta_path)
		return serve_text(r);
	if (d->seconds) {
		/* A window: the profile then minus the profile now. */
		r->base = cprof_snapshot_take(route_kind(d->route), cprof_now_ns(CLOCK_REALTIME));
		if (!r->base)
			return respond_error(c, 500, "failed to collect profile", NULL, false);
		if (d->route == CPROF_HTTP_PROFILE) {
			/* CPROF_CPU=on-demand: the timers run while a window
			 * is open (closed in on_completed). */
			r->cpu_window = true;
			cprof_cpu_demand(+1);
		}
		wait_until(r, now_mono() + (int64_t)d->seconds * 1000000000);
		return MHD_YES;
	}
	return serve_profile(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **req_cls)
{
	(void)cls;
	(void)version;
	request_t *r = *req_cls;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		*req_cls = r;
		r->connection = c;
		r->slot = slot_of(c);
		return check_request(r, url, method);
	}
	if (*upload_size) {
		/* Only a symbol POST gets here (check_request answered
		 * every other body). */
		size_t n = *upload_size;
		*upload_size = 0;
		if (r->answered || r->body_too_big || r->body_len + n > CPROF_HTTP_BODY_MAX) {
			r->body_too_big = true;
			return MHD_YES;
		}
		char *p = realloc(r->body, r->body_len + n + 1);
		if (!p)
			return MHD_NO;
		memcpy(p + r->body_len, upload, n);
		r->body = p;
		r->body_len += n;
		r->body[r->body_len] = 0;
		return MHD_YES;
	}
	if (r->due_now) {
		r->due_now = false;
		return serve_profile(r);
	}
	if (!r->answered)
		return serve_request(r);
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode code)
{
	(void)cls;
	(void)code;
	request_t *r = *req_cls;
	conn_slot_t *slot = slot_of(c);
	if (slot) {
		/* Keep-alive: the next request's clock starts now. */
		slot->waiting = false;
		slot->reading_since = now_mono();
	}
	if (!r)
		return;
	for (request_t **p = &http.waiting; *p; p = &(*p)->next_waiting)
		if (*p == r) {
			*p = r->next_waiting;
			break;
		}
	if (r->cpu_window)
		cprof_cpu_demand(-1);
	cprof_snapshot_free(r->base);
	free(r->body);
	free(r);
	*req_cls = NULL;
}

/* ---- the serving thread -------------------------------------------------- */

static bool load_mhd(void)
{
	void *h = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		cprof_log("CPROF_HTTP: cannot load %s (%s); install libmicrohttpd12; no endpoint",
			  MHD_SONAME, dlerror());
		return false;
	}
#define CPROF_MHD_RESOLVE(name)                                                 \
	if (!(mhd.name = (__typeof__(name) *)dlsym(h, #name))) {                \
		cprof_log("CPROF_HTTP: %s has no %s; no endpoint", MHD_SONAME, #name); \
		return false;                                                   \
	}
	CPROF_MHD_FUNCS(CPROF_MHD_RESOLVE)
#undef CPROF_MHD_RESOLVE
	return true;
}

/* CPROF_HTTP_TOKEN, or the first line of CPROF_HTTP_TOKEN_FILE, which
 * must be a regular file of ours that nobody else can read. Read in the
 * constructor, by raw system calls (the descriptor is open for those
 * three calls only), so that a bad file is said before the program runs,
 * however short it is: from the serving thread, a program that ended
 * first never heard why it had no endpoint. */
static bool load_token(void)
{
	if (cprof_config.http_token[0]) {
		strcpy(http.token, cprof_config.http_token);
		http.token_len = strlen(http.token);
	}
	if (!cprof_config.http_token_file[0])
		return true;
	const char *path = cprof_config.http_token_file;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || syscall(SYS_fstat, fd, &st) != 0) {
		cprof_log("CPROF_HTTP_TOKEN_FILE=\"%s\" cannot be read (%s); no endpoint", path,
			  strerror(errno));
		if (fd >= 0)
			syscall(SYS_close, fd);
		return false;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
		char mode[8];
		snprintf(mode, sizeof mode, "%o", (unsigned)(st.st_mode & 07777));
		cprof_log("CPROF_HTTP_TOKEN_FILE=\"%s\" must be a file of this user with mode 0600 "
			  "(it is %s); no endpoint", path, mode);
		syscall(SYS_close, fd);
		return false;
	}
	char buf[sizeof http.token + 2];
	ssize_t n = syscall(SYS_read, fd, buf, sizeof buf - 1);
	syscall(SYS_close, fd);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	size_t len = strlen(buf);
	bool usable = len > 0 && len < sizeof http.token;
	for (size_t i = 0; i < len; i++)
		usable &= buf[i] >= 0x21 && buf[i] <= 0x7e;
	if (!usable) {
		cprof_log("CPROF_HTTP_TOKEN_FILE=\"%s\" holds no usable token (one line of 1 to 255 "
			  "visible characters); no endpoint", path);
		return false;
	}
	memcpy(http.token, buf, len + 1);
	http.token_len = len;
	return true;
}

/* A unix socket left by an earlier run (nobody accepts on it) is
 * replaced; a live one is not. */
static void remove_stale_socket(const struct sockaddr_un *sun)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return;
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return;
	if (connect(probe, (const struct sockaddr *)sun, sizeof *sun) != 0 &&
	    errno == ECONNREFUSED)
		unlink(sun->sun_path);
	close(probe);
}

static int open_listener(const cprof_http_address_t *a)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof ss);
	if (a->family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, a->path);
		len = sizeof *sun;
		remove_stale_socket(sun);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)a->port);
		memcpy(&sin6->sin6_addr, a->ip, 16);
		len = sizeof *sin6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->port);
		memcpy(&sin->sin_addr, a->ip, 4);
		len = sizeof *sin;
	}
	int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (a->family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (a->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	/* The umask is this thread's own (CLONE_FS): the socket is 0600. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&ss, len);
	umask(old);
	if (rc != 0 || listen(fd, 64) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	len = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &len);
	char ip[INET6_ADDRSTRLEN] = "";
	if (a->family == AF_UNIX) {
		snprintf(http.where, sizeof http.where, "unix:%s", a->path);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
		snprintf(http.where, sizeof http.where, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
		snprintf(http.where, sizeof http.where, "%s:%u", ip, ntohs(sin->sin_port));
	}
	return fd;
}

static void program_name(char *out, size_t cap)
{
	/* As dump.c names files: [A-Za-z0-9_-], so the name globs. */
	const char *s = program_invocation_short_name;
	size_t n = 0;
	for (; s && *s && n < cap - 1; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		out[n++] = ok ? c : '_';
	}
	if (n == 0)
		out[n++] = 'p';
	out[n] = 0;
}

/* For :0, CPROF_OUT/<program>.<pid>.http holds the address, written
 * under a temporary name and renamed, so a script polling for it never
 * reads half a line. */
static void write_address_file(void)
{
	char name[64], path[sizeof cprof_config.out_dir + 96], tmp[sizeof path + 8];
	program_name(name, sizeof name);
	snprintf(path, sizeof path, "%s/%s.%d.http", cprof_config.out_dir, name, (int)getpid());
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	mkdir(cprof_config.out_dir, 0755);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	char line[sizeof http.where + 2];
	int n = snprintf(line, sizeof line, "%s\n", http.where);
	if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
		cprof_log("CPROF_HTTP: cannot write %s (%s)", path, strerror(errno));
		unlink(tmp);
	}
}

/* Leaves the program's descriptor table: from here on this thread's
 * descriptors are its own. Keeps stderr (2) for the start-up messages;
 * 0 and 1 become /dev/null. 0 or -errno. */
static int private_descriptors(void)
{
	if (unshare(CLONE_FILES | CLONE_FS) != 0)
		return -errno;
	if (syscall(SYS_close_range, 3u, ~0u, 0) != 0) {
		struct rlimit rl = { 1024, 1024 };
		getrlimit(RLIMIT_NOFILE, &rl);
		for (rlim_t fd = 3; fd < rl.rlim_cur && fd < (1u << 20); fd++)
			close((int)fd);
	}
	close(0);
	close(1);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC); /* 0 */
	if (null == 0)
		dup2(0, 1);
	return 0;
}

static void drop_stderr(void)
{
	dup2(0, 2); /* /dev/null: the program's stderr is no longer held */
}

static void check_timeouts(int64_t now)
{
	int64_t limit = (int64_t)cprof_config.http_timeout * 1000000000;
	for (unsigned i = 0; i < http.nslots; i++) {
		conn_slot_t *s = &http.slots[i];
		if (s->used && !s->waiting && s->fd >= 0 && now - s->reading_since > limit) {
			/* A client too slow to send its request or take its
			 * answer, silent on a kept-alive connection, or half
			 * closed where libmicrohttpd would wait for it:
			 * libmicrohttpd sees the end of the stream and closes
			 * the connection. */
			shutdown(s->fd, SHUT_RDWR);
			s->reading_since = INT64_MAX / 2; /* once */
		}
	}
}

/* Milliseconds until the next thing this thread must do itself (-1:
 * nothing; libmicrohttpd adds its own timeouts). */
static int32_t next_wake(int64_t now)
{
	int64_t next = INT64_MAX;
	for (request_t *r = http.waiting; r; r = r->next_waiting)
		if (r->waiting && r->due < next)
			next = r->due;
	int64_t limit = (int64_t)cprof_config.http_timeout * 1000000000;
	for (unsigned i = 0; i < http.nslots; i++)
		if (http.slots[i].used && !http.slots[i].waiting &&
		    http.slots[i].reading_since + limit < next)
			next = http.slots[i].reading_since + limit;
	if (next == INT64_MAX)
		return -1;
	int64_t ms = (next - now) / 1000000 + 1;
	return ms < 0 ? 0 : ms > 60000 ? 60000 : (int32_t)ms;
}

static void resume_due(int64_t now)
{
	for (request_t *r = http.waiting; r; r = r->next_waiting)
		if (r->waiting && r->due <= now) {
			r->waiting = false;
			r->due_now = true;
			if (r->slot) {
				r->slot->waiting = false;
				r->slot->reading_since = now;
			}
			mhd.MHD_resume_connection(r->connection);
		}
}

/* 1 while the serving thread is starting: until it serves, or has said
 * why it will not. An exit waits for that (cprof_http_settle), so that
 * a short program still hears the one line its setting earned. */
static _Atomic int http_starting;

static void start_settled(void)
{
	atomic_store(&http_starting, 0);
	syscall(SYS_futex, &http_starting, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The serving thread's start: true when it serves. Says why not. */
static bool http_begin(void)
{
	cprof_http_address_t address;
	cprof_http_parse_address(cprof_config.http, &address); /* validated by config.c */

	int err = private_descriptors();
	if (err < 0) {
		cprof_log("CPROF_HTTP: cannot get a descriptor table of its own (%s); no endpoint",
			  strerror(-err));
		return false;
	}
	if (!load_mhd()) {
		drop_stderr();
		return false;
	}
	int listener = open_listener(&address);
	if (listener < 0) {
		cprof_log("CPROF_HTTP=\"%s\": cannot listen (%s); no endpoint", cprof_config.http,
			  strerror(-listener));
		drop_stderr();
		return false;
	}
	http.nslots = cprof_config.http_connections + 16; /* room to say 503 */
	http.slots = calloc(http.nslots, sizeof *http.slots);
	if (http.slots)
		http.daemon = mhd.MHD_start_daemon(
			MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, NULL,
			MHD_OPTION_LISTEN_SOCKET, listener,
			MHD_OPTION_CONNECTION_LIMIT, http.nslots,
			MHD_OPTION_CONNECTION_TIMEOUT, cprof_config.http_timeout,
			MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(HEADERS_MAX + 8192),
			MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
			MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			MHD_OPTION_END);
	if (!http.daemon) {
		cprof_log("CPROF_HTTP=\"%s\": libmicrohttpd would not start; no endpoint",
			  cprof_config.http);
		close(listener);
		drop_stderr();
		return false;
	}
	if (address.family != AF_UNIX && address.port == 0)
		write_address_file();
	cprof_log("serving /debug/pprof/ on %s", http.where);
	drop_stderr();
	return true;
}

static void *http_main(void *arg)
{
	(void)arg;
	cprof_thread.busy = 1; /* nothing this thread does is the program's */
	prctl(PR_SET_NAME, "cprof-http"); /* for top -H and ps -L */
	bool serving = http_begin();
	start_settled();
	if (!serving)
		return NULL;

	/* From here the thread serves until the process ends: it must not
	 * keep the process alive when the program's threads are gone. (The
	 * failures above return, counted as glibc counts them.) */
	cprof_thread_uncount();
	for (;;) {
		int64_t now = now_mono();
		resume_due(now);
		check_timeouts(now);
		mhd.MHD_run_wait(http.daemon, next_wake(now));
	}
	return NULL;
}

void cprof_http_start(void)
{
	if (!cprof_config.http[0] || !load_token())
		return;
	atomic_store(&http_starting, 1);
	int err = cprof_thread_start_detached(http_main);
	if (err) {
		atomic_store(&http_starting, 0);
		cprof_log("CPROF_HTTP: cannot start the serving thread (%s); no endpoint",
			  strerror(err));
	}
}

/* A forked child has no serving thread (its parent's stays the
 * parent's): nothing to wait for at its exit. */
void cprof_http_atfork_child(void)
{
	atomic_store(&http_starting, 0);
}

void cprof_http_settle(void)
{
	int64_t deadline = now_mono() + 2000000000; /* 2 s: a loader lock held forever */
	while (atomic_load(&http_starting)) {
		int64_t left = deadline - now_mono();
		if (left <= 0)
			return;
		struct timespec ts = { left / 1000000000, left % 1000000000 };
		syscall(SYS_futex, &http_starting, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0);
	}
}
