/* Burns CPU in busy_loop until a signal ends it; has no handler of its
 * own. Prints "ready" once running so a test knows when to signal. */
#include <stdint.h>
#include <stdio.h>

static volatile uint64_t sink;

__attribute__((noinline)) static void busy_loop(void)
{
	uint64_t x = 1;
	for (;;) {
		for (int i = 0; i < 1000000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
	}
}

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	busy_loop();
	return 0;
}
