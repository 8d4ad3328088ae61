/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GMime, started once for the whole process: composition (/send) runs on
 * the worker pool, the delivery transform on the loop and the store
 * thread, and g_mime_init() itself is not safe to race.  With it, the
 * system's media-types table (/etc/mime.types, Debian's media-types
 * package), read once, for the types of attachments named only by file.
 */
#ifndef ZMTA_MIME_H
#define ZMTA_MIME_H

#include <stddef.h>

/* Initializes GMime the first time; any thread, any number of times. */
void mime_init(void);

/*
 * The media type for a file name, as Nodemailer guesses it: the extension
 * after the last dot (or the whole name when it has none), case ignored,
 * anything from a '?' on dropped; "application/octet-stream" when the
 * table does not know it.  Calls mime_init().
 */
const char *mime_type_for_name(const char *filename);

/* The first extension the table lists for a media type (no parameters,
 * case ignored); "txt" for other text types, else "bin". */
const char *mime_extension_for_type(const char *type);

/* How many extensions the table holds: 0 when the file could not be read. */
size_t mime_types_known(void);

#endif
