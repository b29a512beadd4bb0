/* A daemon that closes every descriptor above stderr (close_range) and
 * then writes a file COUNT times through the descriptor it gets back,
 * 256 KiB each in 4 KiB writes, reading each back: every file must be
 * whole and the same. A profiler whose own descriptors are in the
 * program's table can close or reuse that number under it.
 * Usage: fd_rewrite DIR COUNT. Prints "files N bad M"; exit 1 when bad. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILE_BYTES (256 * 1024)
#define CHUNK 4096

static unsigned char data[FILE_BYTES], back[FILE_BYTES];

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int count = atoi(argv[2]);
	if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(i * 131 + 7);
	int bad = 0;
	char path[4096];
	for (int n = 0; n < count; n++) {
		snprintf(path, sizeof path, "%s/f%d", argv[1], n % 8);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			perror("open");
			return 1;
		}
		int ok = 1;
		for (size_t off = 0; off < sizeof data; off += CHUNK)
			if (write(fd, data + off, CHUNK) != CHUNK)
				ok = 0;
		if (close(fd) != 0)
			ok = 0;
		fd = open(path, O_RDONLY);
		ssize_t got = 0, r;
		while (fd >= 0 && got < (ssize_t)sizeof back &&
		       (r = read(fd, back + got, sizeof back - (size_t)got)) > 0)
			got += r;
		char extra;
		if (fd < 0 || got != (ssize_t)sizeof back || read(fd, &extra, 1) != 0 ||
		    memcmp(back, data, sizeof data) != 0)
			ok = 0;
		if (fd >= 0)
			close(fd);
		bad += !ok;
	}
	printf("files %d bad %d\n", count, bad);
	return bad != 0;
}
