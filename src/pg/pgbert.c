/*
 * pgbert.c - module entry: PG_MODULE_MAGIC, settings, and build facts.
 *
 * _PG_init must never touch CUDA or OpenBLAS: it also runs in the postmaster
 * when the library is preloaded, and in every parallel worker.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "blas.h"
#include "cpu.h"
#include "pgbert.h"
#include "unicode.h"
#include "worker.h"

PG_MODULE_MAGIC;

#define PGBERT_VERSION "0.6.0"

char	   *pgbert_default_model = NULL;
int			pgbert_model_cache_mb = 1024;
int			pgbert_cpu_threads = 1;
int			pgbert_batch_tokens = 4096;
int			pgbert_progress_interval = 10;
int			pgbert_worker_mode = PGBERT_WORKER_AUTO;
int			pgbert_worker_device = 0;
int			pgbert_worker_threads = 1;
int			pgbert_training_threads = 1;
int			pgbert_training_nice = 10;
int			pgbert_worker_batch_tokens = 8192;
int			pgbert_worker_max_wait_ms = 0;
int			pgbert_worker_memory_mb = 2048;
int			pgbert_gpu_memory_mb = 0;
int			pgbert_gpu_precision = 0;
int			pgbert_cpu_precision = PGBERT_CPU_FP32;

static const struct config_enum_entry worker_options[] = {
	{"auto", PGBERT_WORKER_AUTO, false},
	{"on", PGBERT_WORKER_ON, false},
	{"off", PGBERT_WORKER_OFF, false},
	{"true", PGBERT_WORKER_ON, true},
	{"false", PGBERT_WORKER_OFF, true},
	{NULL, 0, false}
};

static const struct config_enum_entry device_options[] = {
	{"auto", 0, false},
	{"cpu", 1, false},
	{"cuda", 2, false},
	{NULL, 0, false}
};

static const struct config_enum_entry precision_options[] = {
	{"bf16", 0, false},
	{"fp32", 1, false},
	{NULL, 0, false}
};

static const struct config_enum_entry cpu_precision_options[] = {
	{"fp32", PGBERT_CPU_FP32, false},
	{"int8", PGBERT_CPU_INT8, false},
	{"bf16", PGBERT_CPU_BF16, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/* Define the settings. */
void
_PG_init(void)
{
	DefineCustomStringVariable("pgbert.default_model",
							   "Model that classify() and embed() use when none is named.",
							   "Empty: the only stored model, an error when there are several.",
							   &pgbert_default_model, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.model_cache_size",
							"Memory for model versions loaded in one backend.",
							"Least recently used versions are freed beyond it; one model larger than it still loads.",
							&pgbert_model_cache_mb, 1024, 1, INT_MAX / 2, PGC_USERSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.cpu_threads",
							"Threads one backend uses for a forward pass on the CPU.",
							"1 suits backends that run beside parallel workers and other sessions.",
							&pgbert_cpu_threads, 1, 1, 256, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.batch_tokens",
							"Most tokens run through the model in one engine call.",
							"Bounds the activation memory of classify_batch(); the query can be cancelled between calls.",
							&pgbert_batch_tokens, 4096, 64, 1048576, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.progress_interval",
							"Seconds between progress notices of a training run.",
							"0 turns them off.",
							&pgbert_progress_interval, 10, 0, 86400, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.worker",
							 "Run models in the encoder worker when it is running.",
							 "auto: when pgbert is preloaded; on: also say why when it cannot; off: in the session.",
							 &pgbert_worker_mode, PGBERT_WORKER_AUTO, worker_options, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.device",
							 "Device the encoder worker's engine process runs models on.",
							 "auto picks the GPU when the engine has one, else the CPU.",
							 &pgbert_worker_device, 0, device_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_threads",
							"Threads the encoder worker's engine process uses on the CPU.",
							NULL,
							&pgbert_worker_threads, 1, 1, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.training_threads",
							"Threads the trainer's engine process uses on the CPU for training runs.",
							"Training runs in its own engine beside the encoder's; give it the cores inference does not need.",
							&pgbert_training_threads, 1, 1, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.training_nice",
							"Scheduling priority (nice value) of the trainer's engine process.",
							"Above 0, inference gets a core first when both want it. A change restarts the engine "
							"when no training runs in it, else it applies when the engine next starts.",
							&pgbert_training_nice, 10, 0, 19, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_batch_tokens",
							"Most tokens the encoder worker merges into one batch.",
							"One request larger than this still runs, alone.",
							&pgbert_worker_batch_tokens, 8192, 64, 1048576, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_max_wait",
							"How long the encoder worker holds a batch with room for more requests.",
							"0: never; batches still merge what arrived while the previous one ran.",
							&pgbert_worker_max_wait_ms, 0, 0, 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.worker_memory",
							"Memory for model versions held by the encoder worker's engine process.",
							"Least recently used versions are dropped beyond it.",
							&pgbert_worker_memory_mb, 2048, 1, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.gpu_memory",
							"Device memory the engine process may use on the GPU.",
							"Weights and activations; a batch that would pass it fails alone. 0: the whole card.",
							&pgbert_gpu_memory_mb, 0, 0, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.gpu_precision",
							 "Arithmetic of the GPU's matrix products.",
							 "bf16: tensor cores with float32 accumulation; fp32: float32 throughout, for parity.",
							 &pgbert_gpu_precision, 0, precision_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.cpu_precision",
							 "Arithmetic of the encoder's dense layers in forward passes run by this backend.",
							 "fp32: float32, the reference. int8: 8-bit weights and inputs (CPUs with AVX2), faster "
							 "and less exact. bf16: bfloat16 products, float32 sums (CPUs with AVX512-BF16; refused "
							 "elsewhere). Applies also to this session's requests to the encoder worker (refused "
							 "there when it runs on a GPU); training stays fp32.",
							 &pgbert_cpu_precision, PGBERT_CPU_FP32, cpu_precision_options, PGC_USERSET, 0, NULL, NULL,
							 NULL);
	DefineCustomBoolVariable("pgbert.batching",
							 "Batch per-row classify(), classify_scores() and embed() calls across rows.",
							 "Applies to statements planned after it changes; EXPLAIN shows a PgbertBatch node.",
							 &pgbert_batching, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgbert.batch_rows",
							"Most rows one batching node reads ahead and runs together.",
							"Blocks start at one row and double up to this; 1 turns batching off.",
							&pgbert_batch_rows, 256, 1, 65536, PGC_USERSET, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgbert");

	/* a planner hook and a custom node only; they start nothing */
	pgbert_batch_scan_init();

	/* the worker and its shared memory exist only when preloaded; no CUDA or BLAS here */
	if (process_shared_preload_libraries_in_progress)
		pgbert_worker_register();
}

void
pgbert_load_blas(void)
{
	char		err[256];

	if (bt_blas_load(NULL, pgbert_cpu_threads, err, sizeof(err)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("%s", err),
				 errhint("Install OpenBLAS (Debian: libopenblas0).")));
}

char *
pgbert_quote_limit(const char *s)
{
	int			len = strlen(s);
	int			keep;

	if (pg_mbstrlen_with_len(s, len) <= PGBERT_QUOTE_CHARS)
		return pstrdup(s);
	keep = pg_mbcharcliplen(s, len, PGBERT_QUOTE_CHARS);
	return psprintf("%.*s...", keep, s);
}

PG_FUNCTION_INFO_V1(pgbert_info);

/* Build facts of the loaded library, as jsonb. */
Datum
pgbert_info(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"version\": \"%s\"", PGBERT_VERSION);
	appendStringInfo(&buf, ", \"utf8proc_unicode\": \"%s\"", bt_uc_utf8proc_version());
	appendStringInfoString(&buf, ", \"tokenizer_reference\": ");
	escape_json(&buf, bt_uc_reference_tables_id());
	appendStringInfo(&buf, ", \"tokenizer_tables_current\": %s",
					 bt_uc_tables_current() ? "true" : "false");
	appendStringInfoString(&buf, ", \"blas_library\": ");
	escape_json(&buf, bt_blas_library());
	{
		char		path[160];

		/* the kernels' instruction set in this process, and what the CPU has beyond it */
		bt_cpu_describe(path, sizeof(path));
		appendStringInfoString(&buf, ", \"cpu_path\": ");
		escape_json(&buf, path);
		appendStringInfo(&buf, ", \"cpu_bf16\": %s", bt_cpu_bf16() ? "true" : "false");
	}
#ifdef PGBERT_USE_CUDA
	appendStringInfoString(&buf, ", \"cuda_compiled\": true}");
#else
	appendStringInfoString(&buf, ", \"cuda_compiled\": false}");
#endif
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
