/*
 * replay.c: the main() of the replay_<target> programs. It runs a fuzz
 * target's LLVMFuzzerTestOneInput over every file of the files and
 * directories named on the command line (the committed seed corpus and the
 * regression corpus of crashers found earlier), the way SQLite's fuzzcheck
 * replays its corpora. It needs no libFuzzer, so every compiler builds it and
 * `meson test --suite fuzz-replay` runs it as part of the ordinary tests; on a
 * sanitizer build the replay runs under ASan and UBSan too.
 *
 * Each input gets its own heap buffer of exactly its size, and an alarm:
 * an input that runs longer than FUZZ_REPLAY_TIMEOUT seconds (default 10)
 * is reported as a hang. Files whose names start with "." are skipped, so a
 * directory can be kept in git with a .gitkeep.
 *
 * A regression input whose name ends in ".open" reproduces a bug that is
 * reported but not fixed yet (see FUZZ_CHECK_OPEN in fuzz.h): it runs in a
 * child process and is expected to fail there. Once it passes, the bug is
 * fixed and the replay fails until the ".open" is dropped from the name, so
 * that from then on the input guards the fix like any other.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

/* Optional in a target: present in those that set up keys or files. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *current;    /* the input being run, for the hang report */
static unsigned long ran, open_bugs;

static void
on_alarm(int sig)
{
	static const char msg[] = "replay: hang (timeout) on input ";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0 || write(2, current, strlen(current)) < 0 ||
	    write(2, "\n", 1) < 0)
		_exit(3);
	_exit(3);
}

static int
run_file(const char *path, unsigned timeout)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	current = path;
	if (strlen(path) > 5 && strcmp(path + strlen(path) - 5, ".open") == 0) {
		/* a known open bug: expected to fail, in a child */
		pid_t pid = fork();
		int status = 0;

		if (pid < 0) {
			perror("replay: fork");
			free(buf);
			return -1;
		}
		if (pid == 0) {
			int devnull = open("/dev/null", O_WRONLY);

			if (devnull >= 0)
				dup2(devnull, 2);
			alarm(timeout);
			LLVMFuzzerTestOneInput(buf, (size_t)n);
			_exit(0);
		}
		free(buf);
		if (waitpid(pid, &status, 0) != pid) {
			perror("replay: waitpid");
			return -1;
		}
		ran++;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			fprintf(stderr, "replay: %s passes now: the bug is fixed, so drop \".open\" from its "
			    "name (and make its FUZZ_CHECK_OPEN a FUZZ_CHECK)\n", path);
			return -1;
		}
		fprintf(stderr, "replay: %s: known open bug, still reproduces\n", path);
		open_bugs++;
		return 0;
	}
	alarm(timeout);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	alarm(0);
	free(buf);
	ran++;
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or every regular file of a directory in name order. */
static int
run_path(const char *path, unsigned timeout)
{
	struct stat st;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	DIR *d;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path, timeout);
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				abort();
		}
		names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
		if (names[n] == NULL)
			abort();
		sprintf(names[n], "%s/%s", path, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && run_file(names[i], timeout) != 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *t = getenv("FUZZ_REPLAY_TIMEOUT");
	unsigned timeout = t != NULL && atoi(t) > 0 ? (unsigned)atoi(t) : 10;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	/* the replay checks everything, known open bugs included */
	unsetenv("FUZZ_SKIP_OPEN");
	signal(SIGALRM, on_alarm);
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (run_path(argv[i], timeout) != 0)
			rc = 1;
	}
	if (ran == 0) {
		fprintf(stderr, "replay: no input found\n");
		rc = 1;
	}
	printf("%s: %lu inputs replayed (%lu of them known open bugs)%s\n", argv[0], ran, open_bugs,
	    rc == 0 ? ", all as expected" : ", with errors");
	return rc;
}
