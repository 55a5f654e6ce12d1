/*
 * session_engine.h - the engine as a backend runs it in-process: the
 * settings its forward passes and training steps take, and OpenBLAS.
 */
#ifndef PGBERT_SESSION_ENGINE_H
#define PGBERT_SESSION_ENGINE_H

/* pgbert.cpu_precision's values */
typedef enum PgbertCpuPrecision
{
	PGBERT_CPU_FP32,
	PGBERT_CPU_INT8,
	PGBERT_CPU_BF16
} PgbertCpuPrecision;

extern int	pgbert_cpu_threads;
extern int	pgbert_cpu_precision;	/* a PgbertCpuPrecision */

/* Define pgbert.cpu_threads and pgbert.cpu_precision (_PG_init). */
extern void pgbert_session_engine_init(void);

/* The name of a PgbertCpuPrecision, as the setting spells it. */
extern const char *pgbert_cpu_precision_name(int precision);

/* Open OpenBLAS for a forward pass or training step here, with pgbert.cpu_threads. */
extern void pgbert_load_blas(void);

#endif
