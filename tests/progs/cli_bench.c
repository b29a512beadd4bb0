/* cli_bench — the benchmark of the README's CI example and of its test
 * (tests/e2e/cli.sh): four stages with a fixed CPU cost each, in shares
 * of about 40/30/20/10 percent, on one thread.
 *
 * Usage: cli_bench [--slow STAGE] [--slower PCT] [--units N]
 *   --slow STAGE   the deliberately slowed version: STAGE (parse_input,
 *                  hash_records, sort_records or format_output) does 3
 *                  times its work
 *   --slower PCT   the uniformly slowed version: every stage does PCT
 *                  percent more work (no share moves, the total does)
 *   --units N      work per share point (default 4; about 1 ms each, so
 *                  about 0.4 s in all)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

/* n xorshift steps from a seed, written out in each stage (a macro, not
 * a function, not even an inlined one) so that the stage's time is its
 * own flat time in the profile. */
#define SPIN(n, seed)                                               \
	do {                                                        \
		uint64_t x_ = 88172645463325252ULL ^ (uint64_t)(seed); \
		for (uint64_t i_ = 0; i_ < (n); i_++) {                 \
			x_ ^= x_ << 13;                                 \
			x_ ^= x_ >> 7;                                  \
			x_ ^= x_ << 17;                                 \
		}                                                       \
		sink += x_;                                             \
	} while (0)

static long units = 4;
static const char *slowed = "";
static long slower = 0;

/* Each stage: `share` points of work, three times that when slowed, and
 * `slower` percent more for all. */
#define STAGE(name, share)                                                  \
	__attribute__((noinline)) static void name(void)                   \
	{                                                                   \
		long work = (share) * units * (strcmp(slowed, #name) ? 1 : 3); \
		work += work * slower / 100;                                \
		for (long i = 0; i < work; i++)                             \
			SPIN(1000000, i);                                    \
	}

STAGE(parse_input, 40)
STAGE(hash_records, 30)
STAGE(sort_records, 20)
STAGE(format_output, 10)

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--slow") == 0 && i + 1 < argc)
			slowed = argv[++i];
		else if (strcmp(argv[i], "--slower") == 0 && i + 1 < argc)
			slower = atol(argv[++i]);
		else if (strcmp(argv[i], "--units") == 0 && i + 1 < argc)
			units = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: cli_bench [--slow STAGE] [--slower PCT] [--units N]\n");
			return 2;
		}
	}
	parse_input();
	hash_records();
	sort_records();
	format_output();
	if (slower)
		printf("cli_bench: done (all %ld%% slower)\n", slower);
	else
		printf("cli_bench: done (%s)\n", slowed[0] ? slowed : "as is");
	return 0;
}
