/* libFuzzer target for the endpoint's own request handling
 * (preload/http_route.c): the input is split at newlines into a method, a
 * path, the seconds and debug values, a body and a token, and goes
 * through the routing decision, the symbol body parser, the token check
 * and the CPROF_HTTP address parser. They must never crash, read out of
 * bounds or answer 200 with an error, and what they accept must be
 * self-consistent. `make fuzz-http FUZZ_SECONDS=N`.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "http_route.h"

static void count_address(uint64_t address, void *ctx)
{
	assert(address != 0);
	(*(size_t *)ctx)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = 0;
	char *field[6] = { "", "", NULL, NULL, "", "" };
	char *p = copy;
	for (int i = 0; i < 6 && p; i++) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		field[i] = p;
		p = nl ? nl + 1 : NULL;
	}
	size_t body_len = strlen(field[4]);
	cprof_http_request_t in = {
		.method = field[0], .path = field[1], .seconds = field[2], .debug = field[3],
		.has_body = body_len > 0, .body_length = body_len,
		.max_seconds = size % 2 ? 300 : 1,
	};
	cprof_http_decision_t d;
	cprof_http_decide(&in, &d);
	if (d.status == 200) {
		assert(d.error == NULL);
		assert(d.route < CPROF_HTTP_ROUTE_COUNT);
		assert(d.seconds <= in.max_seconds);
		assert(!in.has_body || d.route == CPROF_HTTP_SYMBOL);
	} else {
		assert(d.error && *d.error);
		assert(d.status >= 400 && d.status < 600);
	}
	size_t n = 0;
	cprof_http_symbol_addresses(field[4], body_len, count_address, &n);
	assert(n <= body_len / 2 + 1);
	size_t token_len = strlen(field[5]);
	if (cprof_http_token_ok(field[4], field[5], token_len))
		assert(strncmp(field[4], "Bearer ", 7) == 0 && strcmp(field[4] + 7, field[5]) == 0);
	cprof_http_address_t a;
	if (cprof_http_parse_address(field[1], &a) == NULL) {
		assert(a.family != 0);
		assert(a.port <= 65535);
	}
	free(copy);
	return 0;
}
