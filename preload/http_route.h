/* http_route.h — the endpoint's decisions that need no HTTP library: the
 * CPROF_HTTP address, which path a request names and what its query asks,
 * the symbol request's body, the token check. Pure functions on strings,
 * so that config.c can validate CPROF_HTTP and the fuzzer
 * (tests/fuzz/fuzz_http_route.c) can drive them without a server.
 */
#ifndef CPROF_HTTP_ROUTE_H
#define CPROF_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CPROF_HTTP ------------------------------------------------------- */

typedef struct cprof_http_address {
	int family;          /* AF_INET, AF_INET6 or AF_UNIX */
	unsigned char ip[16];/* network order; 4 bytes for AF_INET */
	unsigned port;
	char path[108];      /* AF_UNIX */
	bool loopback;       /* 127/8, ::1, or a unix socket */
} cprof_http_address_t;

/* Parses "127.0.0.1:6060", "[::1]:6060", "localhost:6060", ":0" (any free
 * port on 127.0.0.1), "0.0.0.0:6060", "unix:/abs/path". Host names other
 * than localhost are refused: resolving them would mean DNS from inside
 * the program. NULL on success, else why not (a short phrase). */
const char *cprof_http_parse_address(const char *s, cprof_http_address_t *out);

/* ---- requests --------------------------------------------------------- */

typedef enum cprof_http_route {
	CPROF_HTTP_INDEX,
	CPROF_HTTP_PROFILE,     /* CPU over a window */
	CPROF_HTTP_HEAP,
	CPROF_HTTP_ALLOCS,
	CPROF_HTTP_MUTEX,
	CPROF_HTTP_BLOCK,
	CPROF_HTTP_DELTA_HEAP,
	CPROF_HTTP_DELTA_MUTEX,
	CPROF_HTTP_DELTA_BLOCK,
	CPROF_HTTP_CMDLINE,
	CPROF_HTTP_SYMBOL,
	CPROF_HTTP_THREADS,     /* a snapshot of every thread (Go's goroutine) */
	CPROF_HTTP_ROUTE_COUNT
} cprof_http_route_t;

typedef struct cprof_http_request {
	const char *method;
	const char *path;     /* without the query */
	const char *seconds;  /* the query's value, NULL when absent */
	const char *debug;
	bool has_body;        /* Content-Length > 0 or chunked */
	uint64_t body_length; /* declared, 0 when unknown */
	unsigned max_seconds; /* CPROF_HTTP_MAX_SECONDS */
} cprof_http_request_t;

#define CPROF_HTTP_BODY_MAX 65536 /* symbol requests only */

typedef struct cprof_http_decision {
	int status;           /* 200, or the error status */
	const char *error;    /* the error body (without its newline) */
	const char *allow;    /* the Allow header of a 405 */
	cprof_http_route_t route;
	unsigned seconds;     /* window: 0 = the profile as it stands */
	int debug;            /* debug=N: 0 binary, else a text form */
} cprof_http_decision_t;

/* What Go's net/http/pprof would do with the request (statuses and error
 * texts as its serveError writes them), with our limits on top. */
void cprof_http_decide(const cprof_http_request_t *in, cprof_http_decision_t *out);

/* The name a route is served under ("heap", "delta_heap", ...). */
const char *cprof_http_route_name(cprof_http_route_t route);

/* The symbol request's body, "0x1234+0x5678+...": calls fn for every
 * non-zero address in it, in order (strconv.ParseUint(word, 0, 64) as
 * Go's handler does; words that do not parse are skipped). */
void cprof_http_symbol_addresses(const char *body, size_t len,
				 void (*fn)(uint64_t address, void *ctx), void *ctx);

/* "Bearer <token>" against the token, in time that depends only on the
 * lengths of the header and the token, not on where they differ. */
bool cprof_http_token_ok(const char *authorization, const char *token, size_t token_len);

#endif
