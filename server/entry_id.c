/* entry_id.c: packed entry IDs (see entry_id.h). */
#include "entry_id.h"

#include <string.h>

static const char HEX[] = "0123456789abcdef";

/* Where the text has hyphens: every other character is a digit. */
static bool is_hyphen_at(size_t i)
{
	return i == 8 || i == 13 || i == 18 || i == 23;
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case too: its text would not come back the same */
}

bool entry_id_pack(const char *id, uint8_t out[ENTRY_ID_BYTES])
{
	size_t k = 0;
	for (size_t i = 0; i < ENTRY_ID_TEXT - 1; i++) {
		if (is_hyphen_at(i)) {
			if (id[i] != '-')
				return false;
			continue;
		}
		int hi = nibble(id[i]), lo = hi < 0 ? -1 : nibble(id[i + 1]);
		if (lo < 0 || is_hyphen_at(i + 1))
			return false;
		out[k++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return id[ENTRY_ID_TEXT - 1] == '\0';
}

void entry_id_unpack(const uint8_t id[ENTRY_ID_BYTES], char out[ENTRY_ID_TEXT])
{
	size_t k = 0;
	for (size_t i = 0; i < ENTRY_ID_TEXT - 1; i++) {
		if (is_hyphen_at(i)) {
			out[i] = '-';
			continue;
		}
		out[i++] = HEX[id[k] >> 4];
		out[i] = HEX[id[k++] & 0xf];
	}
	out[ENTRY_ID_TEXT - 1] = '\0';
}
