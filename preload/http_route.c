/* http_route.c — the endpoint's pure decisions (see http_route.h): no
 * HTTP library, no state, no allocation, so config.c can use the address
 * parser at start-up and the fuzzer can drive everything here.
 *
 * The texts of errors are Go's (net/http/pprof's serveError), so a client
 * that greps them keeps working; what Go does not have (our limits, 405)
 * says what and why in the same one-line form.
 */
#include "http_route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- CPROF_HTTP ------------------------------------------------------- */

static bool parse_port(const char *s, unsigned *out)
{
	if (!*s || strlen(s) > 5)
		return false;
	unsigned v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v > 65535)
		return false;
	*out = v;
	return true;
}

const char *cprof_http_parse_address(const char *s, cprof_http_address_t *out)
{
	memset(out, 0, sizeof *out);
	if (!s || !*s)
		return "empty";
	if (strncmp(s, "unix:", 5) == 0) {
		const char *path = s + 5;
		if (path[0] != '/')
			return "a unix socket needs an absolute path (unix:/path/sock)";
		if (strlen(path) >= sizeof out->path)
			return "the unix socket path is too long";
		out->family = AF_UNIX;
		strcpy(out->path, path);
		out->loopback = true;
		return NULL;
	}
	const char *colon = strrchr(s, ':');
	if (!colon)
		return "no port (HOST:PORT, [::1]:PORT, :PORT or unix:/path)";
	if (!parse_port(colon + 1, &out->port))
		return "the port is not a number from 0 to 65535";
	size_t host_len = (size_t)(colon - s);
	char host[64];
	if (host_len >= sizeof host)
		return "the host is too long";
	memcpy(host, s, host_len);
	host[host_len] = 0;
	if (host_len == 0 || strcmp(host, "localhost") == 0) {
		out->family = AF_INET;
		out->ip[0] = 127;
		out->ip[3] = 1;
		out->loopback = true;
		return NULL;
	}
	if (host[0] == '[') {
		if (host_len < 3 || host[host_len - 1] != ']')
			return "an IPv6 address goes in brackets ([::1]:PORT)";
		host[host_len - 1] = 0;
		if (inet_pton(AF_INET6, host + 1, out->ip) != 1)
			return "not an IPv6 address";
		static const unsigned char v6_loopback[16] = { [15] = 1 };
		out->family = AF_INET6;
		out->loopback = memcmp(out->ip, v6_loopback, 16) == 0;
		return NULL;
	}
	if (inet_pton(AF_INET, host, out->ip) != 1)
		return "not a numeric address or localhost (names are not resolved)";
	out->family = AF_INET;
	out->loopback = out->ip[0] == 127;
	return NULL;
}

/* ---- requests --------------------------------------------------------- */

static const char *const route_names[CPROF_HTTP_ROUTE_COUNT] = {
	[CPROF_HTTP_INDEX] = "",
	[CPROF_HTTP_PROFILE] = "profile",
	[CPROF_HTTP_HEAP] = "heap",
	[CPROF_HTTP_ALLOCS] = "allocs",
	[CPROF_HTTP_MUTEX] = "mutex",
	[CPROF_HTTP_BLOCK] = "block",
	[CPROF_HTTP_DELTA_HEAP] = "delta_heap",
	[CPROF_HTTP_DELTA_MUTEX] = "delta_mutex",
	[CPROF_HTTP_DELTA_BLOCK] = "delta_block",
	[CPROF_HTTP_CMDLINE] = "cmdline",
	[CPROF_HTTP_SYMBOL] = "symbol",
	[CPROF_HTTP_THREADS] = "threads",
};

const char *cprof_http_route_name(cprof_http_route_t route)
{
	return (unsigned)route < CPROF_HTTP_ROUTE_COUNT ? route_names[route] : "?";
}

/* strconv.ParseInt(s, 10, 64) that must also be > 0; *out saturates. */
static bool parse_positive(const char *s, uint64_t *out)
{
	const char *p = s;
	if (*p == '+')
		p++;
	if (!*p)
		return false;
	uint64_t v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v < UINT64_MAX / 10)
			v = v * 10 + (uint64_t)(*p - '0');
		else
			v = UINT64_MAX;
	}
	if (v == 0)
		return false;
	*out = v;
	return true;
}

/* strconv.Atoi with Go's handler's use: anything unparsable is 0. */
static int parse_debug(const char *s)
{
	if (!s)
		return 0;
	const char *p = s;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!*p)
		return 0;
	long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		if (v > 1000000)
			return 0; /* Atoi would accept it; no text form differs */
		v = v * 10 + (*p - '0');
	}
	return (int)(neg ? -v : v);
}

static void fail(cprof_http_decision_t *out, int status, const char *error)
{
	out->status = status;
	out->error = error;
}

void cprof_http_decide(const cprof_http_request_t *in, cprof_http_decision_t *out)
{
	static const char prefix[] = "/debug/pprof/";
	memset(out, 0, sizeof *out);
	out->status = 200;

	const char *path = in->path ? in->path : "";
	if (strncmp(path, prefix, sizeof prefix - 1) != 0) {
		/* Go's mux redirects /debug/pprof to /debug/pprof/; anything
		 * else outside it is the mux's 404. */
		fail(out, 404, "404 page not found");
		return;
	}
	const char *name = path + sizeof prefix - 1;
	int route = -1;
	for (int r = 0; r < CPROF_HTTP_ROUTE_COUNT; r++)
		if (strcmp(name, route_names[r]) == 0)
			route = r;
	if (route < 0) {
		fail(out, 404, "Unknown profile");
		return;
	}
	out->route = (cprof_http_route_t)route;

	const char *method = in->method ? in->method : "";
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (route == CPROF_HTTP_SYMBOL && !get && strcmp(method, "POST") != 0) {
		out->allow = "GET, HEAD, POST";
		fail(out, 405, "Method Not Allowed");
		return;
	}
	if (route != CPROF_HTTP_SYMBOL && !get) {
		out->allow = "GET, HEAD";
		fail(out, 405, "Method Not Allowed");
		return;
	}
	if (in->has_body && route != CPROF_HTTP_SYMBOL) {
		fail(out, 413, "a request body is accepted by /debug/pprof/symbol only");
		return;
	}
	if (in->body_length > CPROF_HTTP_BODY_MAX) {
		fail(out, 413, "request body larger than 64 KiB");
		return;
	}

	out->debug = parse_debug(in->debug);
	const char *seconds = in->seconds && *in->seconds ? in->seconds : NULL;
	uint64_t sec = 0;
	switch (out->route) {
	case CPROF_HTTP_PROFILE:
		/* Go falls back to 30 s for a bad value; a scraper that sent
		 * one would silently wait 30 s for the wrong window, so it is
		 * a 400 here, with Go's delta-profile text. */
		if (!seconds)
			sec = 30;
		else if (!parse_positive(seconds, &sec)) {
			fail(out, 400, "invalid value for \"seconds\" - must be a positive integer");
			return;
		}
		break;
	case CPROF_HTTP_HEAP:
	case CPROF_HTTP_ALLOCS:
	case CPROF_HTTP_MUTEX:
	case CPROF_HTTP_BLOCK:
		if (!seconds)
			break;
		if (!parse_positive(seconds, &sec)) {
			fail(out, 400, "invalid value for \"seconds\" - must be a positive integer");
			return;
		}
		if (out->debug != 0 && sec <= in->max_seconds) {
			fail(out, 400, "seconds and debug params are incompatible");
			return;
		}
		break;
	default:
		break; /* the other paths take no seconds (delta_*: the last request is the base) */
	}
	if (sec > in->max_seconds) {
		fail(out, 400, "profile duration exceeds CPROF_HTTP_MAX_SECONDS");
		return;
	}
	out->seconds = (unsigned)sec;
}

void cprof_http_symbol_addresses(const char *body, size_t len,
				 void (*fn)(uint64_t address, void *ctx), void *ctx)
{
	size_t i = 0;
	while (i <= len) {
		size_t start = i;
		while (i < len && body[i] != '+')
			i++;
		size_t n = i - start;
		char word[32];
		if (n > 0 && n < sizeof word) {
			memcpy(word, body + start, n);
			word[n] = 0;
			char *end;
			errno = 0;
			unsigned long long v = word[0] >= '0' && word[0] <= '9'
						       ? strtoull(word, &end, 0) : 0;
			if (word[0] >= '0' && word[0] <= '9' && !errno && *end == 0 && v != 0)
				fn((uint64_t)v, ctx);
		}
		i++; /* past the '+' (or the end) */
	}
}

bool cprof_http_token_ok(const char *authorization, const char *token, size_t token_len)
{
	static const char bearer[] = "Bearer ";
	if (!authorization || token_len == 0)
		return false;
	size_t len = strlen(authorization);
	unsigned diff = len != sizeof bearer - 1 + token_len;
	/* Every byte of the token is compared whatever the header holds, so
	 * the time says nothing of where a guess went wrong. */
	for (size_t i = 0; i < sizeof bearer - 1 + token_len; i++) {
		unsigned char want = i < sizeof bearer - 1 ? (unsigned char)bearer[i]
							   : (unsigned char)token[i - (sizeof bearer - 1)];
		unsigned char got = i < len ? (unsigned char)authorization[i] : 0;
		diff |= (unsigned)(want ^ got);
	}
	return diff == 0;
}
