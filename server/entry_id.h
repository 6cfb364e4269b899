/* entry_id.h: a registration entry's ID in 16 bytes instead of its 37-byte text.
 *
 * The datastores make every entry ID with uuid_v4 (util.h): 36 lowercase hexadecimal digits and
 * hyphens. The server keeps many copies of IDs (each entry stream remembers the ID and revision
 * of every entry it sent: 100,000 of them in the fleet benchmark), so it keeps them packed and
 * rebuilds the text when it needs it. Only that canonical form packs: the text rebuilt from a
 * packed ID is byte for byte the original, and packed IDs compare (memcmp) in the same order as
 * their texts (strcmp). No state; any thread. */
#ifndef LANYARD_ENTRY_ID_H
#define LANYARD_ENTRY_ID_H

#include <stdbool.h>
#include <stdint.h>

#define ENTRY_ID_BYTES 16
/* The text form with its terminating NUL. */
#define ENTRY_ID_TEXT 37

/* Packs id into out. False (out unspecified) when id is not a UUID in canonical lowercase form
 * (8-4-4-4-12 hexadecimal digits). */
bool entry_id_pack(const char *id, uint8_t out[ENTRY_ID_BYTES]);
/* The text of a packed ID (36 characters and a NUL). */
void entry_id_unpack(const uint8_t id[ENTRY_ID_BYTES], char out[ENTRY_ID_TEXT]);

#endif
