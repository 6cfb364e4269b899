/* der_pem.h: the strict DER reader and the PEM armour that keys.c and x509*.c share.
 *
 * Contract: pure functions of their arguments, no state, safe from any thread. Input may come from
 * a peer or a file: anything malformed is a -1 (or NULL) return, never a read past the buffer.
 * Decoded PEM may be a private key: every intermediate copy is wiped before it is freed, and the
 * caller wipes the result when it is secret. */
#ifndef LANYARD_DER_PEM_H
#define LANYARD_DER_PEM_H

#include <stddef.h>
#include <stdint.h>

/* Reads one DER TLV at *pos of buf[0..len) (single-byte tags, definite minimal lengths):
 * tag, value and value length; advances *pos past it. -1 when malformed or truncated. */
int der_next(const uint8_t *buf, size_t len, size_t *pos, uint8_t *tag, const uint8_t **val,
	     size_t *vlen);
/* Like der_next but the tag must be want; *pos is left alone on failure. */
int der_expect(const uint8_t *buf, size_t len, size_t *pos, uint8_t want, const uint8_t **val,
	       size_t *vlen);

/* PEM with 64-column lines, NUL-terminated. The caller frees. NULL on failure. */
char *pem_encode(const char *label, const uint8_t *der, size_t len);
/* Decodes every PEM block with the given label ("CERTIFICATE") into concatenated DER; blocks with
 * other labels are skipped. 0 (also when none is found: *der_len = 0), or -1 on a malformed block.
 * The caller frees *der. */
int pem_decode_concat(const char *pem, size_t len, const char *label, uint8_t **der, size_t *der_len);
/* Decodes the first PEM block (by position in pem) whose label is one of labels[0..n_labels).
 * 0 with the DER in *der (the caller wipes and frees it), or -1 when there is none or it is
 * malformed (encrypted PEM, with its Proc-Type headers, is malformed here). */
int pem_decode_first(const char *pem, size_t len, const char *const *labels, size_t n_labels,
		     uint8_t **der, size_t *der_len);

#endif
