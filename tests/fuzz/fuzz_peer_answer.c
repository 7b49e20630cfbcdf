/*
 * fuzz_peer_answer.c: the reader of another node's answers
 * (server/protocol/peer_answer.h) on whatever a peer could send.
 *
 * Checks:
 *  - an accepted key list has at most the room given, every kid
 *    NUL-terminated, printable and non-empty, and the same list is read
 *    again with exactly that many slots, and refused with one fewer;
 *  - a result read is 1 to 31 characters of [a-z_], and none is left in
 *    the buffer when refused.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/peer_answer.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct peer_answer_key keys[8], again[8];
	const char *text = (const char *)data;
	char result[PEER_RESULT_MAX + 1];
	size_t n = 0, m = 0;

	if (peer_answer_keys(text, size, "n2", keys, 8, &n) == 0) {
		FUZZ_CHECK(n <= 8);
		for (size_t i = 0; i < n; i++) {
			size_t l = strnlen(keys[i].kid, sizeof(keys[i].kid));
			FUZZ_CHECK(l > 0 && l <= PEER_KID_MAX);
			for (size_t j = 0; j < l; j++)
				FUZZ_CHECK(keys[i].kid[j] > 0x20 && keys[i].kid[j] < 0x7f);
		}
		FUZZ_CHECK(peer_answer_keys(text, size, "n2", again, n, &m) == 0 && m == n);
		if (n > 0)
			FUZZ_CHECK(peer_answer_keys(text, size, "n2", again, n - 1, &m) == -1 && m == 0);
	} else
		FUZZ_CHECK(n == 0);
	if (peer_answer_result(text, size, result) == 0) {
		size_t l = strnlen(result, sizeof(result));
		FUZZ_CHECK(l >= 1 && l <= PEER_RESULT_MAX);
		for (size_t j = 0; j < l; j++)
			FUZZ_CHECK((result[j] >= 'a' && result[j] <= 'z') || result[j] == '_');
	} else
		FUZZ_CHECK(result[0] == '\0');
	return 0;
}
