/*
 * cli.h - the sluice command's subcommands.
 */
#ifndef CLI_H
#define CLI_H

#include "sl_config.h"

/* sluice migrate [--dir DIR]: applies pending migrations. Returns the exit
 * code. */
int cli_migrate(sl_config *cfg, int argc, char **argv);

/* Applies the migrations of dir to the database at url, under an advisory
 * lock, in one transaction. Prints what it did to stdout. */
sl_status cli_migrate_apply(const char *url, const char *dir, char *errbuf, size_t errsize);

/* The migrations folder: $SLUICE_MIGRATIONS, else next to the binary's
 * checkout (BIN/../../migrations), else ./migrations. Returns a new string. */
char *cli_migrations_dir(void);

/* The folder holding this executable (a new string). */
char *cli_bindir(void);

/* sluice audit verify|export: checks the ledger's hash chain and signed
 * checkpoints (database or export), or exports it. Returns the exit code:
 * 0 it holds, 1 it does not (the first entry that does not match is
 * named), 2 it could not be read. */
int cli_audit(sl_config *cfg, int argc, char **argv);

/* sluice policy test --tool T --args JSON [--agent A] [--user-id U]
 * [--session-id S]: prints, as one JSON line, the policy of the agents file
 * (SLUICE_AGENTS) that would decide such a call ("policy" null: none, a
 * person decides). Returns the exit code: 0, or 2 on bad input. */
int cli_policy(sl_config *cfg, int argc, char **argv);

/* sluice dev up|down ... Returns the exit code. */
int cli_dev(sl_config *cfg, int argc, char **argv);

#endif
