/*
 * fuzz.h: what every fuzz target shares. A target is one function,
 * LLVMFuzzerTestOneInput(data, size), linked either with libFuzzer
 * (-fsanitize=fuzzer: fuzz_<target>, clang only) or with replay.c (a plain
 * main that runs the committed corpora: replay_<target>, any compiler).
 *
 * FUZZ_CHECK states an invariant of the code under test. A violation prints
 * the condition and aborts, which libFuzzer reports as a crash and saves the
 * input, exactly like a sanitizer finding; assert() would vanish under
 * NDEBUG, this does not.
 */
#ifndef SUBMITD_FUZZ_H
#define SUBMITD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond) do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", \
			    __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* FUZZ_CHECK_OPEN states an invariant that the code under test is known to
 * break today: a bug found by fuzzing, reported and not fixed yet, whose
 * crasher is kept as regressions/<target>/<name>.open. The replay programs
 * always check it (and expect the .open inputs to fail); scripts/fuzz sets
 * FUZZ_SKIP_OPEN=1 so that a fuzzing run is not stopped by the known bug
 * again and again and can look for new ones. Fixing the bug: make it a
 * FUZZ_CHECK and drop the ".open" from the crasher's name. */
static inline int
fuzz_skip_open(void)
{
	static int skip = -1;

	if (skip < 0) {
		const char *e = getenv("FUZZ_SKIP_OPEN");

		skip = e != NULL && e[0] == '1';
	}
	return skip;
}

#define FUZZ_CHECK_OPEN(cond) do { \
		if (!fuzz_skip_open()) \
			FUZZ_CHECK(cond); \
	} while (0)

/* A heap copy of exactly n octets (at least one allocated), so that
 * AddressSanitizer sees any read past the end of what a parser was given. */
static inline char *
fuzz_dup(const uint8_t *data, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		p[i] = (char)data[i];
	return p;
}

/* The same with a NUL after the n octets, for functions that take strings. */
static inline char *
fuzz_strdup(const uint8_t *data, size_t n)
{
	char *p = malloc(n + 1);

	if (p == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		p[i] = (char)data[i];
	p[n] = '\0';
	return p;
}

#endif
