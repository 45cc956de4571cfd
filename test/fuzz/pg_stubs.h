/* Arena reset of the fuzzing stubs of PostgreSQL's allocator */
#ifndef LLMGW_PG_STUBS_H
#define LLMGW_PG_STUBS_H
extern void stub_arena_reset(void);
#endif
