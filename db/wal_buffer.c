/*
 * wal_buffer.c: see wal_buffer.h. The VFS is a copy of the default one
 * whose xOpen, for a WAL file, puts the real file behind a struct of ours;
 * every other file is the real file itself (same methods, no cost). The
 * other VFS methods pass the real VFS on, since SQLite hands each method
 * the VFS it was called through.
 *
 * A WAL file's buffer holds octets from offset `off` to `off + len`, not
 * yet written. A write that starts exactly at `off + len` and fits is
 * appended; anything else writes the buffer first, so the file always
 * sees the writes in SQLite's order. A write that fails drops the buffer
 * and fails the call that caused it: SQLite then fails the transaction,
 * and the frames, never committed, are written again by the next one.
 */
#include "db/wal_buffer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <sqlite3.h>

#define VFS_NAME "submitd-walbuf"
/* Most kept before a write: a batch of 4 KB messages makes 100-300 KB;
 * a large body spills its pages in pieces of this size. */
#define BUFFER_MAX (1024 * 1024)
/* Most handed to the real xWrite at once: the unix VFS writes at most
 * 0x1ffff octets per call (it masks the length with that) and reports a
 * longer write as a full disk. */
#define WRITE_MAX (120 * 1024)

struct wal_file {
	sqlite3_file base;             /* pMethods = &wal_methods */
	sqlite3_file *real;            /* the default VFS's file, after this struct */
	unsigned char *buf;
	size_t len, cap;
	sqlite3_int64 off;             /* the file offset of buf[0] */
};

static sqlite3_vfs vfs;
static sqlite3_vfs *real_vfs;
static const char *vfs_name;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define REAL(f) (((struct wal_file *)(f))->real)

/* The buffer into the file: SQLITE_OK, or the real write's error (the
 * buffer is dropped either way). */
static int
wal_flush(struct wal_file *w)
{
	int rc = SQLITE_OK;

	for (size_t done = 0; done < w->len && rc == SQLITE_OK; ) {
		size_t n = w->len - done < WRITE_MAX ? w->len - done : WRITE_MAX;
		rc = w->real->pMethods->xWrite(w->real, w->buf + done, (int)n, w->off + (sqlite3_int64)done);
		done += n;
	}
	w->len = 0;
	return rc;
}

static int
wal_close(sqlite3_file *f)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w), rc2 = w->real->pMethods->xClose(w->real);

	sqlite3_free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_read(sqlite3_file *f, void *p, int amt, sqlite3_int64 off)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), p, amt, off);
}

static int
wal_write(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off)
{
	struct wal_file *w = (struct wal_file *)f;
	size_t n = (size_t)amt;
	int rc;

	if (amt <= 0)
		return w->real->pMethods->xWrite(w->real, p, amt, off);
	if (w->len > 0 && off == w->off + (sqlite3_int64)w->len && w->len + n <= BUFFER_MAX) {
		/* the common case: the next header or page of the same commit */
	} else {
		if ((rc = wal_flush(w)) != SQLITE_OK)
			return rc;
		if (n > WRITE_MAX)
			return w->real->pMethods->xWrite(w->real, p, amt, off);
		w->off = off;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 64 * 1024;
		unsigned char *b;
		while (cap < w->len + n)
			cap *= 2;
		if (cap > BUFFER_MAX)
			cap = BUFFER_MAX;
		b = sqlite3_realloc64(w->buf, cap);
		if (b == NULL) {
			/* no memory for the buffer: write what we have, then this */
			if ((rc = wal_flush(w)) != SQLITE_OK)
				return rc;
			return w->real->pMethods->xWrite(w->real, p, amt, off);
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return SQLITE_OK;
}

static int
wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int
wal_sync(sqlite3_file *f, int flags)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int
wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int
wal_lock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int
wal_unlock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int
wal_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int
wal_file_control(sqlite3_file *f, int op, void *arg)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int
wal_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int
wal_device_characteristics(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* Shared memory belongs to the database file, not the WAL; passed on all
 * the same, as is memory-mapped reading (after a flush). */
static int
wal_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int
wal_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void
wal_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int
wal_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int
wal_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	int rc = wal_flush((struct wal_file *)f);

	return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFetch(REAL(f), off, amt, pp);
}

static int
wal_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods wal_methods = {
	3, wal_close, wal_read, wal_write, wal_truncate, wal_sync, wal_file_size, wal_lock, wal_unlock,
	wal_check_reserved, wal_file_control, wal_sector_size, wal_device_characteristics, wal_shm_map,
	wal_shm_lock, wal_shm_barrier, wal_shm_unmap, wal_fetch, wal_unfetch,
};

/* The real file sits after our struct, aligned as SQLite aligns files. */
static size_t
real_offset(void)
{
	return (sizeof(struct wal_file) + 15) & ~(size_t)15;
}

static int
vfs_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	struct wal_file *w = (struct wal_file *)f;
	sqlite3_file *real;
	int rc;

	if (!(flags & SQLITE_OPEN_WAL))
		return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
	real = (sqlite3_file *)((unsigned char *)f + real_offset());
	memset(w, 0, sizeof(*w));
	rc = real_vfs->xOpen(real_vfs, name, real, flags, out_flags);
	if (rc != SQLITE_OK) {
		w->base.pMethods = NULL;
		return rc;
	}
	if (real->pMethods == NULL || real->pMethods->iVersion < 3) {
		/* a default VFS we do not know how to wrap: no buffer */
		real->pMethods->xClose(real);
		return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
	}
	w->real = real;
	w->base.pMethods = &wal_methods;
	return SQLITE_OK;
}

static int
vfs_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int
vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int
vfs_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *
vfs_dl_open(sqlite3_vfs *v, const char *name)
{
	return real_vfs->xDlOpen(real_vfs, name);
}

static void
vfs_dl_error(sqlite3_vfs *v, int n, char *msg)
{
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*vfs_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void
vfs_dl_close(sqlite3_vfs *v, void *h)
{
	real_vfs->xDlClose(real_vfs, h);
}

static int
vfs_randomness(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int
vfs_sleep(sqlite3_vfs *v, int us)
{
	return real_vfs->xSleep(real_vfs, us);
}

static int
vfs_current_time(sqlite3_vfs *v, double *t)
{
	return real_vfs->xCurrentTime(real_vfs, t);
}

static int
vfs_get_last_error(sqlite3_vfs *v, int n, char *msg)
{
	return real_vfs->xGetLastError(real_vfs, n, msg);
}

static int
vfs_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *t)
{
	return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

static int
vfs_set_system_call(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr p)
{
	return real_vfs->xSetSystemCall(real_vfs, name, p);
}

static sqlite3_syscall_ptr
vfs_get_system_call(sqlite3_vfs *v, const char *name)
{
	return real_vfs->xGetSystemCall(real_vfs, name);
}

static const char *
vfs_next_system_call(sqlite3_vfs *v, const char *name)
{
	return real_vfs->xNextSystemCall(real_vfs, name);
}

static void
vfs_register(void)
{
	int size;

	if (sqlite3_initialize() != SQLITE_OK)
		return;
	real_vfs = sqlite3_vfs_find(NULL);
	/* the methods below use up to version 3 of the real VFS */
	if (real_vfs == NULL || real_vfs->iVersion < 3)
		return;
	size = (int)real_offset() + real_vfs->szOsFile;
	vfs.iVersion = 3;
	vfs.szOsFile = size > real_vfs->szOsFile ? size : real_vfs->szOsFile;
	vfs.mxPathname = real_vfs->mxPathname;
	vfs.zName = VFS_NAME;
	vfs.xOpen = vfs_open;
	vfs.xDelete = vfs_delete;
	vfs.xAccess = vfs_access;
	vfs.xFullPathname = vfs_full_pathname;
	vfs.xDlOpen = vfs_dl_open;
	vfs.xDlError = vfs_dl_error;
	vfs.xDlSym = vfs_dl_sym;
	vfs.xDlClose = vfs_dl_close;
	vfs.xRandomness = vfs_randomness;
	vfs.xSleep = vfs_sleep;
	vfs.xCurrentTime = vfs_current_time;
	vfs.xGetLastError = vfs_get_last_error;
	vfs.xCurrentTimeInt64 = vfs_current_time_int64;
	vfs.xSetSystemCall = vfs_set_system_call;
	vfs.xGetSystemCall = vfs_get_system_call;
	vfs.xNextSystemCall = vfs_next_system_call;
	if (sqlite3_vfs_register(&vfs, 0) == SQLITE_OK)
		vfs_name = VFS_NAME;
}

const char *
wal_buffer_vfs(void)
{
	pthread_once(&once, vfs_register);
	return vfs_name;
}
