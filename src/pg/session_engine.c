/*
 * session_engine.c - settings of the engine calls a backend makes itself,
 * and loading OpenBLAS for them (never in _PG_init: the postmaster and every
 * parallel worker run that, and OpenBLAS starts threads when it loads).
 */
#include "postgres.h"

#include "utils/guc.h"

#include "blas.h"
#include "session_engine.h"

int			pgbert_cpu_threads = 1;
int			pgbert_cpu_precision = PGBERT_CPU_FP32;

static const struct config_enum_entry cpu_precision_options[] = {
	{"fp32", PGBERT_CPU_FP32, false},
	{"int8", PGBERT_CPU_INT8, false},
	{"bf16", PGBERT_CPU_BF16, false},
	{NULL, 0, false}
};

/* Define the settings of in-process engine calls. */
void
pgbert_session_engine_init(void)
{
	DefineCustomIntVariable("pgbert.cpu_threads",
							"Threads one backend uses for a forward pass on the CPU.",
							"1 suits backends that run beside parallel workers and other sessions.",
							&pgbert_cpu_threads, 1, 1, 256, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("pgbert.cpu_precision",
							 "Arithmetic of the encoder's dense layers in forward passes run by this backend.",
							 "fp32: float32, the reference. int8: 8-bit weights and inputs (CPUs with AVX2), faster "
							 "and less exact. bf16: bfloat16 products, float32 sums (CPUs with AVX512-BF16; refused "
							 "elsewhere). Applies also to this session's requests to the encoder worker (refused "
							 "there when it runs on a GPU); training stays fp32.",
							 &pgbert_cpu_precision, PGBERT_CPU_FP32, cpu_precision_options, PGC_USERSET, 0, NULL, NULL,
							 NULL);
}

/* How EXPLAIN and messages spell a precision. */
const char *
pgbert_cpu_precision_name(int precision)
{
	for (const struct config_enum_entry *e = cpu_precision_options; e->name; e++)
		if (e->val == precision)
			return e->name;
	return "fp32";
}

/* OpenBLAS with this session's thread count, before the first pass here. */
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
