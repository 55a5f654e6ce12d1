/*
 * test_serve.c - the engine process's protocol (serve.h) without PostgreSQL:
 * bt_serve runs in a forked child on one end of a socket pair, this program
 * plays the encoder worker on the other. Checks the hello, loading a
 * checkpoint, forward results equal to bt_model_forward's bit for bit, every
 * output kind, a training run equal to one in this process, and that bad
 * requests get error replies while the server keeps serving.
 *
 *   test_serve MODEL_DIR        (a BertForSequenceClassification checkpoint)
 */
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blas.h"
#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "serve.h"
#include "testing.h"
#include "train.h"

static int	fd;

/* Read one reply; payload malloc'd (NUL-terminated) or NULL. */
static int
reply(BtMsgHeader *h, uint8_t **payload)
{
	*payload = NULL;
	if (bt_io_read_all(fd, h, sizeof(*h)) != 0 || h->magic != BT_SERVE_MAGIC)
		return -1;
	*payload = malloc(h->len + 1);
	if (h->len && bt_io_read_all(fd, *payload, h->len) != 0)
		return -1;
	(*payload)[h->len] = 0;
	return 0;
}

/* Send a request and read its reply; the reply's status, or -1 if the server is gone. */
static int
ask(uint16_t kind, uint64_t key, const void *p1, size_t n1, const void *p2, size_t n2,
	const void *p3, size_t n3, uint8_t **payload, uint64_t *len)
{
	BtMsgHeader h;

	if (bt_msg_send(fd, kind, 0, key, p1, n1, p2, n2, p3, n3) != 0 || reply(&h, payload) != 0)
		return -1;
	if (len)
		*len = h.len;
	return h.status;
}

int
main(int argc, char **argv)
{
	char		err[512];
	int			sv[2];
	pid_t		pid;
	size_t		clen,
				wlen;
	uint8_t    *config,
			   *weights,
			   *payload;
	uint64_t	len;
	BtMsgHeader h;
	BtBertConfig cfg;
	BtSafetensors *st;
	BtBertModel *m;
	uint32_t	cl;
	uint8_t    *load;
	/* two sequences: [CLS] a b [SEP], [CLS] c [SEP] */
	int32_t		offsets[3] = {0, 4, 7};
	int32_t		ids[7] = {101, 2000, 2001, 102, 101, 2002, 102};
	BtForwardHead head = {BT_WANT_LOGITS, 2, BT_PRECISION_FP32, 0};
	int			st_code;

	if (argc != 2)
	{
		fprintf(stderr, "usage: test_serve MODEL_DIR\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	config = read_file(argv[1], "config.json", &clen);
	weights = read_file(argv[1], "model.safetensors", &wlen);
	if (!config || !weights || bt_blas_load(NULL, 1, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "cannot read %s or load OpenBLAS\n", argv[1]);
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 2;
	pid = fork();
	if (pid == 0)
	{
		close(sv[0]);
		_exit(bt_serve(sv[1], "auto", 1, NULL));
	}
	close(sv[1]);
	fd = sv[0];

	/* hello */
	check(reply(&h, &payload) == 0 && h.kind == BT_MSG_HELLO && h.status == BT_SERVE_OK &&
		  h.len == sizeof(BtHello) && ((BtHello *) payload)->version == BT_SERVE_VERSION &&
		  strcmp(((BtHello *) payload)->device, "cpu") == 0, "hello: version %d, device cpu", BT_SERVE_VERSION);
	free(payload);

	/* forward before load: unknown model */
	st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids), &payload, NULL);
	check(st_code == BT_ERR_UNKNOWN_MODEL, "forward of a model not loaded: unknown model (%d: %s)", st_code, payload);
	free(payload);

	/* load */
	cl = (uint32_t) clen;
	load = malloc(4 + clen);
	memcpy(load, &cl, 4);
	memcpy(load + 4, config, clen);
	st_code = ask(BT_MSG_LOAD, 7, load, 4 + clen, weights, wlen, NULL, 0, &payload, &len);
	check(st_code == BT_SERVE_OK && len == sizeof(BtLoaded) && ((BtLoaded *) payload)->num_classes == 3 &&
		  ((BtLoaded *) payload)->has_pooler, "load: 3 classes, with pooler");
	free(payload);
	st_code = ask(BT_MSG_LOAD, 8, load, 4 + clen, weights, wlen / 2, NULL, 0, &payload, NULL);
	check(st_code == BT_ERR_MODEL, "a truncated checkpoint is refused: %s", payload);
	free(payload);

	/* the same forward passes here, on a model packed for inference as the engine serves it */
	if (bt_config_parse((const char *) config, clen, &cfg, err, sizeof(err)) != 0 ||
		(st = bt_safetensors_parse(weights, wlen, err, sizeof(err))) == NULL ||
		(m = bt_model_load(&cfg, st, NULL, 0, err, sizeof(err))) == NULL ||
		bt_model_pack(m, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "local model: %s\n", err);
		return 2;
	}
	bt_safetensors_free(st);
	for (int want = BT_WANT_LOGITS; want <= BT_WANT_POOLER; want++)
	{
		int			width = want == BT_WANT_LOGITS ? m->num_classes : m->cfg.hidden_size;
		float	   *local = calloc((size_t) 2 * width, sizeof(float));
		float	   *hidden = calloc((size_t) 7 * m->cfg.hidden_size, sizeof(float));
		BtBatch		b = {2, offsets, ids, NULL};
		BtForwardOut o;
		static const char *const names[] = {"logits", "mean", "cls", "pooler"};

		memset(&o, 0, sizeof(o));
		if (want == BT_WANT_LOGITS)
			o.logits = local;
		else if (want == BT_WANT_MEAN)
			o.mean = local;
		else if (want == BT_WANT_POOLER)
			o.pooled = local;
		else
			o.hidden = hidden;
		bt_model_forward(m, &b, &o, err, sizeof(err));
		if (want == BT_WANT_CLS)
			for (int s = 0; s < 2; s++)
				memcpy(local + s * width, hidden + (size_t) offsets[s] * width, sizeof(float) * width);
		head.want = want;
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
					  &payload, &len);
		check(st_code == BT_SERVE_OK && len == sizeof(float) * 2 * width &&
			  memcmp(payload, local, len) == 0, "forward (%s) equals bt_model_forward bit for bit", names[want]);
		free(payload);
		free(local);
		free(hidden);
	}
	/*
	 * precision per request: int8 equals this process's quantized model bit for bit, fp32
	 * after it is float32's again (the engine keeps both forms), an unknown one is refused
	 */
	{
		int			width = m->num_classes;
		float	   *fp32 = calloc((size_t) 2 * width, sizeof(float));
		float	   *int8 = calloc((size_t) 2 * width, sizeof(float));
		BtBatch		b = {2, offsets, ids, NULL};
		BtForwardOut o;
		int			quantized;

		memset(&o, 0, sizeof(o));
		o.logits = fp32;
		m->use_q8 = false;
		bt_model_forward(m, &b, &o, err, sizeof(err));
		quantized = bt_model_quantize(m, err, sizeof(err)) == 0;
		o.logits = int8;
		bt_model_forward(m, &b, &o, err, sizeof(err));
		m->use_q8 = false;
		head.want = BT_WANT_LOGITS;
		head.precision = BT_PRECISION_INT8;
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
					  &payload, &len);
		check(quantized && st_code == BT_SERVE_OK && len == sizeof(float) * 2 * width &&
			  memcmp(payload, int8, len) == 0,
			  "an int8 request equals a quantized bt_model_forward bit for bit (%s 8-bit layers)",
			  m->n_q8 > 0 ? "with" : "no AVX2: without");
		check(m->n_q8 == 0 || memcmp(fp32, int8, len) != 0, "8-bit layers move the logits");
		free(payload);
		head.precision = BT_PRECISION_FP32;
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
					  &payload, &len);
		check(st_code == BT_SERVE_OK && len == sizeof(float) * 2 * width && memcmp(payload, fp32, len) == 0,
			  "an fp32 request after it is float32's bit for bit");
		free(payload);
		/* bf16: bit for bit as this process's bf16 pass where the CPU has it, else refused */
		{
			float	   *bf16 = calloc((size_t) 2 * width, sizeof(float));
			char		why[256];
			int			rc = bt_model_to_bf16(m, why, sizeof(why));

			o.logits = bf16;
			if (rc == 0)
				bt_model_forward(m, &b, &o, err, sizeof(err));
			m->use_bf16 = false;
			head.precision = BT_PRECISION_BF16;
			st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
						  &payload, &len);
			if (rc == 0)
				check(st_code == BT_SERVE_OK && len == sizeof(float) * 2 * width && memcmp(payload, bf16, len) == 0
					  && memcmp(bf16, fp32, len) != 0,
					  "a bf16 request equals a bf16 bt_model_forward bit for bit, off float32's");
			else
				check(rc == -2 && st_code == BT_ERR_PRECISION && strstr((char *) payload, "AVX512-BF16"),
					  "a bf16 request without AVX512-BF16 is refused: %s", payload);
			free(payload);
			m->use_bf16 = false;
			head.precision = BT_PRECISION_FP32;
			st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
						  &payload, &len);
			check(st_code == BT_SERVE_OK && memcmp(payload, fp32, len) == 0, "an fp32 request after bf16 is "
				  "float32's bit for bit");
			free(payload);
			free(bf16);
		}
		head.precision = 7;
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids),
					  &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "an unknown precision: %s", payload);
		free(payload);
		head.precision = BT_PRECISION_FP32;
		free(fp32);
		free(int8);
	}

	/* training needs the Hugging Face layout: a packed model is refused, a fresh copy from here on */
	{
		BtTrainOptions o = bt_train_default_options(&m->cfg);
		BtTrainer  *refused = m->packed ? bt_trainer_create(m, &o, err, sizeof(err)) : NULL;

		check(!m->packed || (refused == NULL && strstr(err, "packed") != NULL),
			  "a model packed for inference cannot be trained: %s", m->packed ? err : "(no AVX2: not packed)");
	}
	bt_model_free(m);
	if (bt_config_parse((const char *) config, clen, &cfg, err, sizeof(err)) != 0 ||
		(st = bt_safetensors_parse(weights, wlen, err, sizeof(err))) == NULL ||
		(m = bt_model_load(&cfg, st, NULL, 0, err, sizeof(err))) == NULL)
	{
		fprintf(stderr, "local model: %s\n", err);
		return 2;
	}
	bt_safetensors_free(st);

	/* bad requests get error replies; the server keeps serving */
	{
		int32_t		bad_offsets[3] = {0, 4, 9};
		int32_t		bad_ids[7] = {101, 2000, 2001, 102, 101, 999999, 102};
		BtForwardHead bad_head = {9, 2, BT_PRECISION_FP32, 0};

		head.want = BT_WANT_LOGITS;
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), bad_offsets, sizeof(bad_offsets), ids, sizeof(ids),
					  &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "offsets past the ids: %s", payload);
		free(payload);
		st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), bad_ids, sizeof(bad_ids),
					  &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "an id outside the vocabulary: %s", payload);
		free(payload);
		st_code = ask(BT_MSG_FORWARD, 7, &bad_head, sizeof(bad_head), offsets, sizeof(offsets), ids, sizeof(ids),
					  &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "an unknown output kind: %s", payload);
		free(payload);
		st_code = ask(BT_MSG_FORWARD, 7, &head, 3, NULL, 0, NULL, 0, &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "a truncated request: %s", payload);
		free(payload);
		{
			/* offsets whose differences overflow int (the sanitized build aborted on them) */
			int32_t		wrap_offsets[4] = {0, 4, INT32_MIN, 7};
			BtForwardHead wrap_head = {.want = BT_WANT_LOGITS, .n_seq = 3, .precision = BT_PRECISION_FP32};

			st_code = ask(BT_MSG_FORWARD, 7, &wrap_head, sizeof(wrap_head), wrap_offsets, sizeof(wrap_offsets),
						  ids, sizeof(ids), &payload, NULL);
			check(st_code == BT_ERR_BAD_REQUEST, "offsets that go back by INT32_MIN: %s", payload);
			free(payload);
		}
		st_code = ask(99, 7, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
		check(st_code == BT_ERR_BAD_REQUEST, "an unknown message kind: %s", payload);
		free(payload);
		st_code = ask(BT_MSG_TRAIN_STEP, 5, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
		check(st_code == BT_ERR_UNKNOWN_MODEL, "a step of a training run that does not exist: %s", payload);
		free(payload);
	}

	/* a training run in the server equals one here, byte for byte */
	{
		BtTrainBegin b;
		BtTrainOptions opts = bt_train_default_options(&m->cfg);
		BtTrainer  *t;
		BtTrainBatch tb = {1.0f, 2};
		int32_t		labels[2] = {0, 2};
		BtBatch		batch = {2, offsets, ids, NULL};
		uint8_t    *blob;
		size_t		blob_len;
		float		loss_here = 0,
					lr,
					norm;
		int			same_loss = 1;

		opts.learning_rate = 1e-3f;
		opts.total_steps = 3;
		opts.seed = 7;
		memset(&b, 0, sizeof(b));
		bt_train_begin_set_options(&b, &opts);
		b.num_classes = 3;
		b.from_checkpoint = 1;
		b.config_len = (uint32_t) clen;
		st_code = ask(BT_MSG_TRAIN_BEGIN, 11, &b, sizeof(b), config, clen, weights, wlen, &payload, NULL);
		check(st_code == BT_SERVE_OK, "training run started in the server");
		free(payload);
		if (bt_model_reset_head(&m, 3, 7, err, sizeof(err)) != 0 ||
			(t = bt_trainer_create(m, &opts, err, sizeof(err))) == NULL)
		{
			fprintf(stderr, "local trainer: %s\n", err);
			return 2;
		}
		for (int step = 0; step < 3; step++)
		{
			uint8_t		acc[sizeof(tb) + sizeof(offsets) + sizeof(labels) + sizeof(ids)];

			/* head, offsets, labels, ids */
			memcpy(acc, &tb, sizeof(tb));
			memcpy(acc + sizeof(tb), offsets, sizeof(offsets));
			memcpy(acc + sizeof(tb) + sizeof(offsets), labels, sizeof(labels));
			memcpy(acc + sizeof(tb) + sizeof(offsets) + sizeof(labels), ids, sizeof(ids));
			st_code = ask(BT_MSG_TRAIN_ACCUMULATE, 11, acc, sizeof(acc), NULL, 0, NULL, 0, &payload, NULL);
			bt_trainer_accumulate(t, &batch, labels, 1.0f, &loss_here, err, sizeof(err));
			same_loss &= st_code == BT_SERVE_OK && memcmp(payload, &loss_here, sizeof(float)) == 0;
			free(payload);
			ask(BT_MSG_TRAIN_STEP, 11, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
			free(payload);
			bt_trainer_step(t, &lr, &norm);
		}
		check(same_loss, "3 steps: the server's batch losses equal this process's");
		st_code = ask(BT_MSG_TRAIN_SAVE, 11, NULL, 0, NULL, 0, NULL, 0, &payload, &len);
		bt_model_save_safetensors(m, &blob, &blob_len, err, sizeof(err));
		check(st_code == BT_SERVE_OK && len == blob_len && memcmp(payload, blob, len) == 0,
			  "the trained checkpoints are byte-identical (%zu bytes)", blob_len);
		free(payload);
		free(blob);
		st_code = ask(BT_MSG_TRAIN_END, 11, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
		free(payload);
		st_code = ask(BT_MSG_TRAIN_SAVE, 11, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
		check(st_code == BT_ERR_UNKNOWN_MODEL, "an ended run is gone");
		free(payload);
		bt_trainer_free(t);
	}

	/* evict, then the model is unknown again; closing the socket ends the server cleanly */
	st_code = ask(BT_MSG_EVICT, 7, NULL, 0, NULL, 0, NULL, 0, &payload, NULL);
	free(payload);
	st_code = ask(BT_MSG_FORWARD, 7, &head, sizeof(head), offsets, sizeof(offsets), ids, sizeof(ids), &payload, NULL);
	check(st_code == BT_ERR_UNKNOWN_MODEL, "evicted: unknown again");
	free(payload);
	close(fd);
	{
		int			status;

		waitpid(pid, &status, 0);
		check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the server exits 0 when the socket closes");
	}
	bt_model_free(m);
	free(load);
	free(config);
	free(weights);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
