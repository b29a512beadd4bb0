/* block.c — placeholder until the block profile lands: the hooks init.c calls. */
#include "cprof_internal.h"

int cprof_block_start(void)
{
	return 0;
}

void cprof_block_atfork_child(void)
{
}
