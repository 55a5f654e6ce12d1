/*
 * pgbert.c - module entry: PG_MODULE_MAGIC, each part's settings, build facts.
 *
 * _PG_init must never touch CUDA or OpenBLAS: it also runs in the postmaster
 * when the library is preloaded, and in every parallel worker.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "batch_scan.h"
#include "blas.h"
#include "classify_sql.h"
#include "cpu.h"
#include "encoder_client.h"
#include "encoder_worker.h"
#include "model_store.h"
#include "progress.h"
#include "session_engine.h"
#include "unicode.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Each part defines its own settings; the worker and its shared memory exist
 * only when preloaded. Nothing here starts a thread or touches CUDA or BLAS.
 */
void
_PG_init(void)
{
	pgbert_session_engine_init();
	pgbert_model_store_init();
	pgbert_classify_init();
	pgbert_progress_init();
	pgbert_encoder_client_init();
	pgbert_encoder_worker_init();
	pgbert_batch_scan_init();
	MarkGUCPrefixReserved("pgbert");

	if (process_shared_preload_libraries_in_progress)
		pgbert_encoder_worker_register();
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
