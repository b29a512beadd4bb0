/* ppm_row — the runs of one colour along a row of a picture, for the
 * flame graph tests (tests/e2e/ci_gate.sh), which render an SVG in
 * headless Chromium and convert the PNG with netpbm's pngtopnm.
 *
 * Usage: ppm_row FILE.ppm Y
 *   Prints one line per run of identical pixels on row Y, left to right:
 *   "<first x> <last x> <r> <g> <b>". Reads binary PPM (P6, maxval 255).
 *   Exit status 2 on a file it cannot read.
 */
#include <stdio.h>
#include <stdlib.h>

/* The next header number, skipping white space and # comments. */
static long next_number(FILE *file)
{
	int c = fgetc(file);
	for (;;) {
		while (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			c = fgetc(file);
		if (c != '#')
			break;
		while (c != '\n' && c != EOF)
			c = fgetc(file);
	}
	long value = -1;
	while (c >= '0' && c <= '9') {
		value = (value < 0 ? 0 : value * 10) + (c - '0');
		c = fgetc(file);
	}
	return value; /* the one white space after it is consumed */
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ppm_row FILE.ppm Y\n");
		return 2;
	}
	FILE *file = fopen(argv[1], "rb");
	if (!file || fgetc(file) != 'P' || fgetc(file) != '6') {
		fprintf(stderr, "ppm_row: %s: not a binary PPM\n", argv[1]);
		return 2;
	}
	long width = next_number(file), height = next_number(file), maxval = next_number(file);
	long y = atol(argv[2]);
	if (width <= 0 || height <= 0 || maxval != 255 || y < 0 || y >= height) {
		fprintf(stderr, "ppm_row: %s: %ldx%ld maxval %ld, row %ld\n", argv[1], width, height,
			maxval, y);
		return 2;
	}
	unsigned char *row = malloc((size_t)width * 3);
	if (!row || fseek(file, y * width * 3, SEEK_CUR) != 0 ||
	    fread(row, 3, (size_t)width, file) != (size_t)width) {
		fprintf(stderr, "ppm_row: %s: short file\n", argv[1]);
		return 2;
	}
	long start = 0;
	for (long x = 1; x <= width; x++) {
		if (x < width && row[3 * x] == row[3 * start] && row[3 * x + 1] == row[3 * start + 1] &&
		    row[3 * x + 2] == row[3 * start + 2])
			continue;
		printf("%ld %ld %d %d %d\n", start, x - 1, row[3 * start], row[3 * start + 1],
		       row[3 * start + 2]);
		start = x;
	}
	free(row);
	fclose(file);
	return 0;
}
