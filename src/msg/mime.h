/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GMime, started once for the whole process: composition (/send) runs on
 * the worker pool, the delivery transform on the loop and the store
 * thread, and g_mime_init() itself is not safe to race.
 */
#ifndef ZMTA_MIME_H
#define ZMTA_MIME_H

/* Initializes GMime the first time; any thread, any number of times. */
void mime_init(void);

#endif
