/* Closes its stderr after asking for a dump, then runs on for SECONDS:
 * a reader of its stderr must see EOF right after the close, so nothing
 * else (a profiler's thread) may hold a copy. Usage: stderr_close SECONDS */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cprof.h"

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2;
	cprof_dump_now(); /* with an unwritable CPROF_OUT: the dumper's line */
	close(2);
	struct timespec ts = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	while (nanosleep(&ts, &ts) != 0)
		;
	return 0;
}
