/*
 * fuzz_serve.c - libFuzzer target for the engine process's protocol (serve.h):
 * every message kind, training ones included, through bt_serve itself.
 *
 * Each input starts the same way: a LOAD of a tiny classifier as model 1 and
 * a TRAIN_BEGIN on the training fixture as run 2 (so FORWARD and the training
 * messages reach the model code, not only "unknown model"). Then the input is
 * read as messages, each
 *
 *   uint8 kind, uint8 key (0: model 1, 1: run 2, else the byte), uint16 len, len bytes
 *
 * sent framed as the encoder worker frames them, and bt_serve answers them all
 * on a socket pair in this process until the input ends. Replies are read and
 * discarded; a crash, a sanitizer report or a hang is the finding. Afterwards
 * bt_serve_reset frees whatever the input left behind.
 *
 *   build/fuzz_serve [libFuzzer options] CORPUS   (from the repository root)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "serve.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *load_msg;		/* uint32 config length, config.json, model.safetensors */
static size_t load_len;
static uint8_t *begin_msg;		/* BtTrainBegin, config.json, model.safetensors */
static size_t begin_len;

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
		(buf = malloc(n + 1)) == NULL || fread(buf, 1, n, f) != (size_t) n)
	{
		fprintf(stderr, "fuzz_serve: cannot read %s (run from the repository root)\n", path);
		exit(2);
	}
	fclose(f);
	*len = (size_t) n;
	return buf;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t		cl,
				wl;
	uint8_t    *c = slurp("test/fixtures/models/tiny_cls/config.json", &cl),
			   *w = slurp("test/fixtures/models/tiny_cls/model.safetensors", &wl);
	uint32_t	c32 = (uint32_t) cl;
	BtTrainBegin b;
	BtTrainOptions o = bt_train_default_options(NULL);

	json_object_seed(1);
	load_len = 4 + cl + wl;
	load_msg = malloc(load_len);
	memcpy(load_msg, &c32, 4);
	memcpy(load_msg + 4, c, cl);
	memcpy(load_msg + 4 + cl, w, wl);
	free(c);
	free(w);

	c = slurp("test/fixtures/train/tiny_cls/config.json", &cl);
	w = slurp("test/fixtures/train/tiny_cls/model.safetensors", &wl);
	memset(&b, 0, sizeof(b));
	o.learning_rate = 1e-3f;
	bt_train_begin_set_options(&b, &o);
	b.num_classes = 3;
	b.from_checkpoint = 1;
	b.config_len = (uint32_t) cl;
	begin_len = sizeof(b) + cl + wl;
	begin_msg = malloc(begin_len);
	memcpy(begin_msg, &b, sizeof(b));
	memcpy(begin_msg + sizeof(b), c, cl);
	memcpy(begin_msg + sizeof(b) + cl, w, wl);
	free(c);
	free(w);
	return 0;
}

typedef struct Feed
{
	int			fd;
	const uint8_t *data;
	size_t		size;
} Feed;

/* Write the fixed start and the input's messages, then end the stream. */
static void *
feed_main(void *arg)
{
	Feed	   *f = arg;
	const uint8_t *p = f->data,
			   *end = f->data + f->size;

	if (bt_msg_send(f->fd, BT_MSG_LOAD, 0, 1, load_msg, load_len, NULL, 0, NULL, 0) != 0 ||
		bt_msg_send(f->fd, BT_MSG_TRAIN_BEGIN, 0, 2, begin_msg, begin_len, NULL, 0, NULL, 0) != 0)
		goto done;
	while (end - p >= 4)
	{
		uint16_t	len;
		uint64_t	key = p[1] == 0 ? 1 : p[1] == 1 ? 2 : p[1];
		int			kind = p[0] % 16;

		memcpy(&len, p + 2, 2);
		p += 4;
		if (len > end - p)
			len = (uint16_t) (end - p);
		if (bt_msg_send(f->fd, (uint16_t) kind, 0, key, p, len, NULL, 0, NULL, 0) != 0)
			break;
		p += len;
	}
done:
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

/* Read and drop replies until bt_serve's end closes. */
static void *
drain_main(void *arg)
{
	int			fd = *(int *) arg;
	char		buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			sv[2];
	pthread_t	feeder,
				drainer;
	Feed		f;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	f.fd = sv[1];
	f.data = data;
	f.size = size;
	pthread_create(&feeder, NULL, feed_main, &f);
	pthread_create(&drainer, NULL, drain_main, &sv[1]);
	(void) bt_serve(sv[0], "cpu", 1, NULL);
	close(sv[0]);
	pthread_join(feeder, NULL);
	pthread_join(drainer, NULL);
	close(sv[1]);
	bt_serve_reset();
	return 0;
}
