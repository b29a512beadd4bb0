/* The heap profile in the dumps. phase_one keeps 8 MiB (2048 x 4 KiB);
 * then the program sends itself the dump signal (SIGUSR2) and waits until
 * the dump's heap file is in $CPROF_OUT; phase_two frees phase one's
 * blocks and keeps 2 MiB of its own. So the first dump has phase_one's
 * 8 MiB in use, the final one has it allocated but no longer in use. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *volatile ones[2048];
static void *volatile twos[512];

__attribute__((noinline)) static void phase_one(void)
{
	for (int i = 0; i < 2048; i++)
		ones[i] = malloc(4096);
}

__attribute__((noinline)) static void phase_two(void)
{
	for (int i = 0; i < 2048; i++)
		free(ones[i]);
	for (int i = 0; i < 512; i++)
		twos[i] = malloc(4096);
}

static int heap_dump_written(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".heap.pb.gz") && e->d_name[0] != '.')
			found = 1;
	closedir(d);
	return found;
}

int main(void)
{
	const char *dir = getenv("CPROF_OUT");
	phase_one();
	raise(SIGUSR2);
	struct timespec ms = { 0, 10 * 1000 * 1000 };
	for (int i = 0; dir && i < 500 && !heap_dump_written(dir); i++)
		nanosleep(&ms, NULL);
	phase_two();
	fprintf(stderr, "dump seen: %d\n", dir && heap_dump_written(dir));
	return 0;
}
