/*
 * encoder_client.h - a session's side of the encoder worker (encoder_client.c):
 * whether to use it, and sending it forward passes and engine messages.
 */
#ifndef PGBERT_ENCODER_CLIENT_H
#define PGBERT_ENCODER_CLIENT_H

#include "model_store.h"

/* pgbert.worker's values */
typedef enum PgbertWorkerMode
{
	PGBERT_WORKER_AUTO,			/* the worker when preloaded and ready, silently in-process without preload */
	PGBERT_WORKER_ON,			/* the same, and a NOTICE also when pgbert is not preloaded */
	PGBERT_WORKER_OFF
} PgbertWorkerMode;

/* Define pgbert.worker (_PG_init). */
extern void pgbert_encoder_client_init(void);

/*
 * usable: preloaded, enabled and ready (else false, with one NOTICE per
 * session when the worker was expected); the trainer likewise, for training
 * runs. forward: run one packed chunk there, n_seq rows of width floats to
 * out, want a BtWant; false when the worker is gone (run it in-process
 * then); errors raise.
 */
extern bool pgbert_worker_usable(void);
extern bool pgbert_trainer_usable(void);
extern bool pgbert_worker_forward(PgbertModel *pm, int want, int n_seq, const int32 *offsets,
								  const int32 *ids, float *out, int width);

/* Count one classify() result of label under its model, for pgbert.worker_models. */
extern void pgbert_worker_count_label(const PgbertModel *pm, int label);

/*
 * Send one engine message (serve.h) through the worker, payload in up to three
 * pieces; the reply, up to out_cap bytes, is at *reply (the session's shared
 * segment, valid until the next request). Returns the engine's status, -1
 * when the engine died (message says how), -2 when the worker is gone.
 */
extern int	pgbert_worker_call(int kind, uint64 key, const void *p1, Size n1, const void *p2, Size n2,
							   const void *p3, Size n3, Size out_cap, char **reply, Size *reply_len,
							   char *message, size_t msglen);

/* Give back this session's shared segment if a large request grew it. */
extern void pgbert_worker_shrink_buffer(void);

#endif
