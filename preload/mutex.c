/* mutex.c — placeholder until the mutex profile lands: the hooks init.c calls. */
#include "cprof_internal.h"

int cprof_mutex_start(void)
{
	return 0;
}

void cprof_mutex_atfork_child(void)
{
}
