/* A small library the stress test dlopens and dlcloses in a loop, so the
 * loader really maps and unmaps code while SIGPROF samples arrive. */
#include <stdint.h>

uint64_t plugin_work(uint64_t n)
{
	uint64_t x = n | 1;
	for (uint64_t i = 0; i < n; i++)
		x = x * 2862933555777941757ULL + 3037000493ULL;
	return x;
}
