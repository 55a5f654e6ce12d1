/*
 * blas.h - OpenBLAS, loaded at first use rather than linked.
 *
 * OpenBLAS starts its thread pool when the library is loaded. Linking it would
 * start that pool in every PostgreSQL backend that merely tokenizes (and in the
 * postmaster once pgbert is preloaded), so the engine opens it with dlopen the
 * first time a model runs, after the caller has chosen a thread count.
 * PostgreSQL-free.
 */
#ifndef PGBERT_BLAS_H
#define PGBERT_BLAS_H

#include <stddef.h>

/* The standard CBLAS enum values, so this header needs no cblas.h. */
enum
{
	BT_ROW_MAJOR = 101,
	BT_NO_TRANS = 111,
	BT_TRANS = 112
};

typedef void (*BtSgemmFn) (int order, int transa, int transb, int m, int n, int k,
						   float alpha, const float *a, int lda, const float *b, int ldb,
						   float beta, float *c, int ldc);

/* cblas_sgemm once bt_blas_load succeeded, NULL before. */
extern BtSgemmFn bt_sgemm;

/*
 * Open OpenBLAS (library: a path or soname, NULL for the usual sonames) and
 * resolve cblas_sgemm. threads > 0 sizes the pool: it is exported as
 * OPENBLAS_NUM_THREADS before the library starts (unless the environment
 * already sets it) and applied after. Later calls only apply threads.
 * 0, or -1 with err.
 */
extern int	bt_blas_load(const char *library, int threads, char *err, size_t errlen);

/* Threads OpenBLAS uses from now on (when loaded and the library can say). */
extern void bt_blas_set_threads(int threads);

/*
 * Threads OpenBLAS uses now (openblas_get_num_threads), 1 when not loaded or
 * the library cannot say. The forward pass takes it as its thread budget.
 */
extern int	bt_blas_threads(void);

/* What was loaded ("" before): the path dladdr reports for cblas_sgemm. */
extern const char *bt_blas_library(void);

#endif
