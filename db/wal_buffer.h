/*
 * wal_buffer.h: a SQLite VFS for the writer's connection that hands the
 * frames of a commit to the kernel in one write instead of two per page.
 *
 * SQLite writes each WAL frame as two pwrite calls (its 24-octet header,
 * then the page), so a batch of a few messages, which dirties pages in
 * twenty-odd b-trees, made about 90 system calls before its fdatasync; each
 * locks the inode and walks the page cache on its own. This VFS wraps the
 * default one: for WAL files only, writes that continue the previous one
 * collect in a buffer, which goes to the file in one write before anything
 * else touches the file (a sync, a read, a truncate, its size, a write
 * elsewhere, a file control, the close) or when it is full.
 *
 * Readers are not affected: a commit's frames become visible to other
 * connections only when SQLite publishes them in the wal-index, which with
 * `synchronous = FULL` (store_open) comes after the WAL's xSync, and xSync
 * writes the buffer first. So a 250 still follows the fdatasync of frames
 * that are all in the file. Under a weaker setting the order would not
 * hold: the connection opened with this VFS must keep FULL.
 */
#ifndef SUBMITD_WAL_BUFFER_H
#define SUBMITD_WAL_BUFFER_H

/* Registers the VFS (once; not as the default) and returns its name for
 * sqlite3_open_v2, or NULL when it cannot be registered (then the caller
 * opens with the default VFS). Thread-safe. */
const char *wal_buffer_vfs(void);

#endif
