/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * `zone-mta queue`: the queue administration of a running daemon from the
 * command line, through its HTTP API (docs/operations.md#administering-the-queue).  Blocking: it is a
 * client, never part of the daemon.  Exit codes: 0 done, 1 the daemon
 * could not do it (unreachable, refused, not found), 2 a usage error.
 */
#ifndef ZMTA_QUEUE_CMD_H
#define ZMTA_QUEUE_CMD_H

/* argv[0] is "queue". */
int queue_cmd(int argc, char **argv);

#endif
