/* pbstruct.h: a JSON object as a google.protobuf.Struct, the form in which the Workload API
 * returns the claims of a validated JWT-SVID (ValidateJWTSVIDResponse.claims). */
#ifndef LANYARD_PBSTRUCT_H
#define LANYARD_PBSTRUCT_H

#include <jansson.h>

#include "google/protobuf/struct.pb-c.h"

/* Bounds the recursion of the conversion: every object and every value nested in obj counts one
 * level, so an object within an object within obj is at depth 4. Claims come from a token a
 * workload sent; the bound keeps a hostile token from exhausting the stack. */
#define PBSTRUCT_MAX_DEPTH 32

/* A Struct holding a deep copy of the JSON object obj: strings, numbers, booleans, nulls, objects
 * and arrays map to their Value kinds. NULL when memory runs out or obj nests deeper than
 * PBSTRUCT_MAX_DEPTH. The caller frees it with pbstruct_free. */
Google__Protobuf__Struct *pbstruct_from_json(const json_t *obj);
/* Frees a Struct built by pbstruct_from_json, with everything it holds. NULL-safe. */
void pbstruct_free(Google__Protobuf__Struct *s);

#endif
