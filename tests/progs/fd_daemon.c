/* A daemon's descriptors under a profiler: close every descriptor above
 * stderr (close_range, as sshd and service managers do), open its input
 * on 3 and its output on 4, and run 4 threads whose loops sit in the vDSO
 * (clock_gettime) and in a function copied into an executable mmap'd page
 * with no unwind information, so an unwinder must fall back and check
 * memory. Meanwhile main copies the input to the output one byte at a
 * time. The input must read back whole and the output hold exactly it.
 * Usage: fd_daemon INPUT OUTPUT SECONDS. Exit 0 when both are exact;
 * prints the process's CPU time (getrusage) as "cpu_ns N". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int (*jit_loop)(int n);

/* mov ecx, edi; 1: dec ecx; jnz 1b; mov eax, ecx; ret */
static const unsigned char loop_code[] = { 0x89, 0xf9, 0xff, 0xc9, 0x75, 0xfc, 0x89, 0xc8, 0xc3 };

__attribute__((noinline)) static void *worker(void *arg)
{
	(void)arg;
	volatile int64_t sink = 0;
	while (!atomic_load(&stop)) {
		struct timespec ts;
		for (int i = 0; i < 2000; i++) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			sink += ts.tv_nsec;
		}
		sink += jit_loop(200000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	double seconds = atof(argv[3]);
	if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	int in = open(argv[1], O_RDONLY);
	int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in != 3 || out != 4) {
		fprintf(stderr, "input on %d, output on %d (want 3 and 4)\n", in, out);
		return 1;
	}
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 1;
	memcpy(page, loop_code, sizeof loop_code);
	jit_loop = (int (*)(int))page;

	pthread_t threads[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&threads[i], NULL, worker, NULL);

	struct stat st;
	fstat(in, &st);
	char *want = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	struct timespec start, now, pause = { 0, 200000 };
	clock_gettime(CLOCK_MONOTONIC, &start);
	/* One byte at a time, spread over the run, so every sample has a
	 * chance to land between two of the program's reads or writes. */
	for (;;) {
		char c;
		ssize_t n = read(in, &c, 1);
		if (n <= 0)
			break;
		if (got < (size_t)st.st_size)
			want[got] = c;
		got++;
		if (write(out, &c, 1) != 1) {
			fprintf(stderr, "write to the output failed\n");
			return 1;
		}
		nanosleep(&pause, NULL);
	}
	do {
		nanosleep(&pause, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	atomic_store(&stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	close(out);
	int bad = 0;
	if (got != (size_t)st.st_size) {
		fprintf(stderr, "read %zu bytes of a %lld-byte input\n", got, (long long)st.st_size);
		bad = 1;
	}
	struct stat ost;
	if (stat(argv[2], &ost) != 0 || ost.st_size != st.st_size) {
		fprintf(stderr, "the output holds %lld bytes, %lld written\n",
			(long long)ost.st_size, (long long)st.st_size);
		bad = 1;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("copied %zu bytes\ncpu_ns %lld\n", got,
	       (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
		       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL);
	return bad;
}
