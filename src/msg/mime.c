/* SPDX-License-Identifier: EUPL-1.2 */
/* GMime's one initialization; see mime.h. */
#include "msg/mime.h"

#include <pthread.h>

#include <gmime/gmime.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
	g_mime_init();
}

void mime_init(void)
{
	pthread_once(&once, init);
}
