/* heap.c — placeholder until the heap profile lands: the hooks init.c calls. */
#include "cprof_internal.h"

int cprof_heap_start(void)
{
	return 0;
}

void cprof_heap_atfork_child(void)
{
}
