/*
 * gpu_backend.c - opening pgbert_gpu.so and handing it models (see gpu_backend.h).
 */
#include "gpu_backend.h"

#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct BtGpu
{
	void	   *library;
	const PgbertGpuApi *api;
	PgbertGpuContext *ctx;
	PgbertGpuPrecision precision;
	char		description[320];
};

/* pgbert_gpu.so beside the running program (both install into pkglibdir). */
static void
default_library(char *path, size_t len)
{
	char		exe[PATH_MAX];
	ssize_t		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
	{
		snprintf(path, len, "pgbert_gpu.so");
		return;
	}
	exe[n] = '\0';
	snprintf(path, len, "%s/pgbert_gpu.so", dirname(exe));
}

BtGpu *
bt_gpu_open(const char *library, const char *precision, size_t memory_limit, char *err, size_t errlen)
{
	char		path[PATH_MAX];
	const PgbertGpuApi *(*get_api) (void);
	PgbertGpuDevice dev;
	BtGpu	   *g;
	int			count = 0;
	char		why[512];

	if (precision == NULL || strcmp(precision, "bf16") == 0)
		precision = "bf16";
	else if (strcmp(precision, "fp32") != 0)
	{
		snprintf(err, errlen, "unknown gpu precision \"%s\" (bf16 or fp32)", precision);
		return NULL;
	}
	if (library == NULL)
		library = getenv("PGBERT_GPU_LIBRARY");
	if (library == NULL)
	{
		default_library(path, sizeof(path));
		library = path;
	}
	g = calloc(1, sizeof(BtGpu));
	if (g == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->precision = strcmp(precision, "fp32") == 0 ? PGBERT_GPU_FP32 : PGBERT_GPU_BF16;
	g->library = dlopen(library, RTLD_NOW | RTLD_LOCAL);
	if (g->library == NULL)
	{
		snprintf(err, errlen, "this installation has no cuda backend: %s", dlerror());
		free(g);
		return NULL;
	}
	*(void **) (&get_api) = dlsym(g->library, "pgbert_gpu_api");
	if (get_api == NULL || (g->api = get_api()) == NULL || g->api->version != PGBERT_GPU_API_VERSION)
	{
		snprintf(err, errlen, "%s is not a pgbert cuda backend of this version", library);
		bt_gpu_close(g);
		return NULL;
	}
	if (g->api->device_count(&count, why, sizeof(why)) != 0)
	{
		snprintf(err, errlen, "cuda: %s", why);
		bt_gpu_close(g);
		return NULL;
	}
	if (count == 0)
	{
		snprintf(err, errlen, "no cuda device (or no driver) on this machine");
		bt_gpu_close(g);
		return NULL;
	}
	if (g->api->device_info(0, &dev, why, sizeof(why)) != 0 ||
		(g->ctx = g->api->open(0, why, sizeof(why))) == NULL)
	{
		snprintf(err, errlen, "cuda: %s", why);
		bt_gpu_close(g);
		return NULL;
	}
	g->api->set_memory_limit(g->ctx, memory_limit);
	snprintf(g->description, sizeof(g->description), "%s (sm_%d%d, %.1f GiB), %s", dev.name, dev.cc_major,
			 dev.cc_minor, dev.total_mem / 1073741824.0, precision);
	return g;
}

void
bt_gpu_close(BtGpu *g)
{
	if (g == NULL)
		return;
	if (g->ctx)
		g->api->close(g->ctx);
	if (g->library)
		dlclose(g->library);
	free(g);
}

const PgbertGpuApi *
bt_gpu_api(const BtGpu *g)
{
	return g->api;
}

const char *
bt_gpu_describe(const BtGpu *g)
{
	return g->description;
}

void
bt_gpu_set_memory_limit(BtGpu *g, size_t bytes)
{
	g->api->set_memory_limit(g->ctx, bytes);
}

size_t
bt_gpu_memory_used(const BtGpu *g)
{
	return g->api->memory_used(g->ctx);
}

PgbertGpuModel *
bt_gpu_upload(BtGpu *g, const BtBertModel *m, char *err, size_t errlen)
{
	const BtBertConfig *c = &m->cfg;
	const BtBertParams *p = &m->p;
	PgbertGpuModelDesc d;

	if (m->packed)
	{
		snprintf(err, errlen, "the model's weights are packed for the CPU (bt_model_pack): upload it before packing");
		return NULL;
	}
	memset(&d, 0, sizeof(d));
	d.hidden = c->hidden_size;
	d.layers = c->num_layers;
	d.heads = c->num_heads;
	d.intermediate = c->intermediate_size;
	d.vocab = c->vocab_size;
	d.max_position = c->max_position;
	d.type_vocab = c->type_vocab_size;
	d.num_classes = m->num_classes;
	d.has_pooler = m->has_pooler;
	d.has_classifier = m->has_classifier;
	d.gelu_tanh = c->activation != BT_ACT_GELU;
	d.layer_norm_eps = c->layer_norm_eps;
	d.num_params = m->num_params;
#define OFFSET(field) d.field = p->field ? (size_t) (p->field - m->params) : 0
	OFFSET(word_emb);
	OFFSET(pos_emb);
	OFFSET(type_emb);
	OFFSET(emb_ln_w);
	OFFSET(emb_ln_b);
	OFFSET(qkv_w);
	OFFSET(qkv_b);
	OFFSET(attn_out_w);
	OFFSET(attn_out_b);
	OFFSET(attn_ln_w);
	OFFSET(attn_ln_b);
	OFFSET(ffn_in_w);
	OFFSET(ffn_in_b);
	OFFSET(ffn_out_w);
	OFFSET(ffn_out_b);
	OFFSET(ffn_ln_w);
	OFFSET(ffn_ln_b);
	OFFSET(pool_w);
	OFFSET(pool_b);
	OFFSET(cls_w);
	OFFSET(cls_b);
#undef OFFSET
	return g->api->model_upload(g->ctx, &d, m->params, g->precision, err, errlen);
}

void
bt_gpu_free_model(BtGpu *g, PgbertGpuModel *gm)
{
	if (g && gm)
		g->api->model_free(gm);
}

int
bt_gpu_forward(BtGpu *g, PgbertGpuModel *gm, const BtBatch *batch, int want, float *out, char *err,
			   size_t errlen)
{
	return g->api->forward(gm, batch->n_seq, batch->offsets, batch->ids, batch->type_ids,
						   (PgbertGpuWant) want, out, err, errlen);
}

void
bt_gpu_use_graphs(BtGpu *g, PgbertGpuModel *gm, bool on)
{
	g->api->model_use_graphs(gm, on ? 1 : 0);
}

bool
bt_gpu_out_of_memory(const char *message)
{
	return strncmp(message, "out of gpu memory", 17) == 0;
}
