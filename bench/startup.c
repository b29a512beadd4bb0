/* startup.c — the start-up benchmark's program: does nothing and exits 0.
 * Whatever a run of it costs beyond the unprofiled run is what loading the
 * profiler, starting its sources and writing its profiles at exit cost. It
 * is linked with -pthread like a typical profiled program, so nothing the
 * shim brings in at load changes which libraries get mapped. */
int main(void)
{
	return 0;
}
