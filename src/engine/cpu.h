/*
 * cpu.h - which instruction set the engine's kernels use, chosen once per
 * process from CPUID and the state the OS saves (XGETBV).
 *
 * The engine is built for baseline x86-64; its fast kernels are compiled with
 * per-function target attributes and run only on a path the CPU and the OS
 * both allow. Paths, each including the one before:
 *
 *   portable  plain C loops and OpenBLAS (any CPU)
 *   avx2      AVX2 + FMA kernels (Haswell, Zen 1 and later)
 *   avx512    AVX-512 F/BW/DQ/VL float32 GEMM (Skylake-SP, Zen 4 and later)
 *   amx       AMX tiles for bf16 and int8 dense layers (Sapphire Rapids and later, where
 *             the OS grants the process the tile state: Linux 5.16 and later)
 *
 * and, on the avx512 path, the optional extensions bf16 (AVX512-BF16's
 * vdpbf16ps, for pgbert.cpu_precision = bf16) and vnni (AVX512-VNNI's
 * vpdpbusd, for int8). The environment variable PGBERT_CPU_PATH
 * (portable, avx2, avx512 or amx) caps the path, so the tests and benchmarks can
 * run every path the CPU has; it never raises it. PostgreSQL-free.
 */
#ifndef PGBERT_CPU_H
#define PGBERT_CPU_H

#include <stdbool.h>
#include <stddef.h>

typedef enum BtCpuPath
{
	BT_CPU_PORTABLE = 0,
	BT_CPU_AVX2,
	BT_CPU_AVX512,
	BT_CPU_AMX
} BtCpuPath;

/* What this CPU and OS offer, whatever the path chosen. */
typedef struct BtCpuFeatures
{
	bool		avx2_fma;
	bool		avx512;			/* F, BW, DQ and VL, with the ZMM state enabled by the OS */
	bool		avx512_bf16;
	bool		avx512_vnni;
	bool		amx;			/* AMX-BF16 tiles, and the OS let this process use them */
	bool		amx_int8;		/* AMX-INT8 too */
} BtCpuFeatures;

/* The CPU's features (cached after the first call). */
extern const BtCpuFeatures *bt_cpu_features(void);

/* The path kernels take: the best the CPU has, capped by PGBERT_CPU_PATH. */
extern BtCpuPath bt_cpu_path(void);

/* Whether the bf16 kernels can run here (avx512 path and AVX512-BF16). */
extern bool bt_cpu_bf16(void);

/* Whether the bf16 kernels use AMX tiles here (amx path). */
extern bool bt_cpu_amx(void);

/* Whether the int8 kernels use AMX tiles here (amx path and AMX-INT8). */
extern bool bt_cpu_amx_int8(void);

/* Whether the int8 kernels use vpdpbusd here (avx512 path and AVX512-VNNI). */
extern bool bt_cpu_vnni(void);

/* "portable", "avx2", "avx512" or "amx". */
extern const char *bt_cpu_path_name(BtCpuPath path);

/*
 * One line naming the path and extensions in use, e.g. "amx+bf16+vnni" or
 * "avx512+bf16+vnni", and what the CPU has beyond them when PGBERT_CPU_PATH
 * capped it: "avx2 (capped by PGBERT_CPU_PATH; cpu has amx+bf16+vnni)".
 */
extern void bt_cpu_describe(char *buf, size_t len);

#endif
