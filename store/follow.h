/* follow.h - `ringd follow`: keeps the store in step with a PostgreSQL table through logical replication, exactly once. */
#ifndef RINGD_STORE_FOLLOW_H
#define RINGD_STORE_FOLLOW_H

/* `ringd follow --db DIR --pg CONNINFO --table [SCHEMA.]NAME [--id-column id]
 * [--slot ringd] [--publication ringd]` (argv[0] is "follow"; RINGD_DB,
 * RINGD_PG, RINGD_TABLE, RINGD_ID_COLUMN, RINGD_SLOT, RINGD_PUBLICATION).
 * Runs until SIGTERM/SIGINT (exit 0 once the transaction in progress is
 * applied and confirmed), a set-up error that needs an operator (exit 1, one
 * log line naming it and the SQL that fixes it) or bad usage (exit 2).
 * PostgreSQL being unreachable is never an exit: it retries with backoff. */
int follow_main(int argc, char **argv);

#endif
