/*
 * pgbert.c - module entry: PG_MODULE_MAGIC and build facts.
 *
 * A future _PG_init must never touch CUDA: it also runs in the postmaster
 * when the library is preloaded.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "unicode.h"

PG_MODULE_MAGIC;

#define PGBERT_VERSION "0.1.0"

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
#ifdef PGBERT_USE_CUDA
	appendStringInfoString(&buf, ", \"cuda_compiled\": true}");
#else
	appendStringInfoString(&buf, ", \"cuda_compiled\": false}");
#endif
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
