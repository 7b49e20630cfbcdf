/*
 * checkpoint.h: WAL checkpoints on a thread of their own.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that makes the WAL
 * reach 1,000 pages, on the connection that committed: for submitd, the
 * writer thread, so every few hundred messages one batch waited while
 * about 4 MB were copied into the database file and both files were
 * fsynced (the p99 of end-of-data to 250 was twice its p90). Here the
 * writer's connection only reports, after each commit, how many frames the
 * WAL holds; the checkpointer copies them on its own connection
 * (PASSIVE: it never blocks the writer, and readers keep their snapshot).
 *
 * The WAL file only starts over at a write transaction that finds every
 * frame copied, which a pass on another thread rarely leaves while the
 * writer keeps appending. So once the WAL is twice the threshold, the
 * thread copies whenever a sixteenth of it is new, and the writer, right
 * after a commit that leaves at most that much uncopied, finishes the
 * checkpoint itself (a few frames and one fsync of the database file);
 * nothing is appended meanwhile, so it completes and the next transaction
 * starts the WAL over. At eight times the threshold the writer
 * checkpoints whatever is left. The WAL file thus stays near twice the
 * threshold and under eight times it, unless a reader keeps an old
 * snapshot open (as with SQLite's own checkpoints).
 */
#ifndef SUBMITD_CHECKPOINT_H
#define SUBMITD_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

struct checkpointer;

/* Open a connection of its own to db_path, start the thread, and take
 * over the checkpoints of the writer's connection `writer_db` (which must
 * stay open until checkpoint_stop). `pages`: the WAL size, in frames, that
 * starts a checkpoint. NULL with err set on failure. */
struct checkpointer *checkpoint_start(const char *db_path, sqlite3 *writer_db, int pages,
    char *err, size_t errlen);
/* Give the writer's connection back its automatic checkpoints, stop the
 * thread, close its connection. */
void checkpoint_stop(struct checkpointer **cp);

#endif
