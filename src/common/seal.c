/* AES-256-GCM frames (see seal.h). */
#include "common/seal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/stream.h"

struct seal {
	EVP_CIPHER_CTX *ctx; /* holds the key */
	uint64_t counter;    /* frames so far: the next nonce */
};

struct seal *seal_new(const uint8_t key[SEAL_KEY_LEN], bool sealing, struct err *e)
{
	struct seal *s = calloc(1, sizeof(*s));
	if (!s) {
		err_set(e, "out of memory");
		return NULL;
	}
	s->ctx = EVP_CIPHER_CTX_new();
	/* The key schedule once; each frame then only sets its nonce. */
	if (!s->ctx ||
	    (sealing ? EVP_EncryptInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL)
		     : EVP_DecryptInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL)) != 1) {
		EVP_CIPHER_CTX_free(s->ctx);
		free(s);
		err_set(e, "cannot set up AES-256-GCM");
		return NULL;
	}
	return s;
}

void seal_free(struct seal *s)
{
	if (!s)
		return;
	EVP_CIPHER_CTX_free(s->ctx); /* cleanses the key schedule */
	free(s);
}

static void seal_nonce(struct seal *s, uint8_t iv[12])
{
	memset(iv, 0, 4);
	le_put_u64(iv + 4, s->counter);
}

long seal_frame_len(const uint8_t hdr[SEAL_HDR_LEN])
{
	uint32_t n = le_get_u32(hdr);
	return n == 0 || n > SEAL_FRAME_MAX ? -1 : (long)n;
}

int seal_frame(struct seal *s, const uint8_t *in, size_t n, uint8_t *out, struct err *e)
{
	uint8_t iv[12];
	int l1 = 0, l2 = 0;

	if (n == 0 || n > SEAL_FRAME_MAX)
		return err_set(e, "sealed frame of %zu bytes", n);
	seal_nonce(s, iv);
	le_put_u32(out, (uint32_t)n);
	if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(s->ctx, NULL, &l1, out, SEAL_HDR_LEN) != 1 ||
	    EVP_EncryptUpdate(s->ctx, out + SEAL_HDR_LEN, &l1, in, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(s->ctx, out + SEAL_HDR_LEN + l1, &l2) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
				out + SEAL_HDR_LEN + n) != 1)
		return err_set(e, "encrypting a frame failed");
	s->counter++;
	return 0;
}

int seal_all(struct seal *s, const uint8_t *in, size_t n, uint8_t *frame,
	     int (*emit)(void *ctx, const uint8_t *frame, size_t len, struct err *e), void *ctx,
	     struct err *e)
{
	while (n > 0) {
		size_t c = n < SEAL_FRAME_MAX ? n : SEAL_FRAME_MAX;
		if (seal_frame(s, in, c, frame, e) < 0 ||
		    emit(ctx, frame, c + SEAL_HDR_LEN + SEAL_TAG_LEN, e) < 0)
			return -1;
		in += c;
		n -= c;
	}
	return 0;
}

int seal_open(struct seal *s, const uint8_t hdr[SEAL_HDR_LEN], const uint8_t *body, size_t len,
	      uint8_t *out, struct err *e)
{
	uint8_t iv[12], tag[SEAL_TAG_LEN];
	int l1 = 0, l2 = 0;

	seal_nonce(s, iv);
	memcpy(tag, body + len, SEAL_TAG_LEN);
	if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(s->ctx, NULL, &l1, hdr, SEAL_HDR_LEN) != 1 ||
	    EVP_DecryptUpdate(s->ctx, out, &l1, body, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1)
		return err_set(e, "decrypting a frame failed");
	if (EVP_DecryptFinal_ex(s->ctx, out + l1, &l2) != 1)
		return err_set(e, "corrupt stream: encrypted frame %llu failed its check (changed on "
			       "the wire, dropped or replayed, or the two sides' keys differ)",
			       (unsigned long long)s->counter);
	s->counter++;
	return 0;
}
