/*
 * wk_write.h - the worker's queue of writes made together (group commit):
 * runs' starts, continues' claims, tools' results and runs' outcomes, those
 * of each kind in one statement (wk_write.c). Tasks queue their writes
 * themselves; the worker only makes and frees the queue.
 */
#ifndef WK_WRITE_H
#define WK_WRITE_H

#include "wk_run.h"

/* The write queue of a worker (env->writes). Free it after the pools
 * have stopped: writes still queued are given up (not made; their
 * messages are not done with, and come again after a restart). */
wk_writes *wk_writes_new(void);
void wk_writes_free(wk_env *env);

#endif
