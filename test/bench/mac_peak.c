/*
 * mac_peak.c - multiply-adds per second of the GEMM inner loops the engine
 * has, on one core: gemm.c's float32 6x16 AVX2 tile (FMAs) and gemm_q8.c's
 * 8-bit one (vpmaddubsw, vpmaddwd by ones, vpaddd), plus the 16-bit
 * alternative that needs no 7-bit weights (vpmaddwd, vpaddd); and where the
 * CPU has them, the 12x32 AVX-512 tiles' instructions: vfmadd231ps,
 * vdpbf16ps (AVX512-BF16) and vpdpbusd (AVX512-VNNI). All on data that stays
 * in L1: these are the ceilings the kernels' GFLOP/s are read against.
 *
 *   mac_peak [ROUNDS]
 *
 * Each loop runs 256 k steps of its tile over and over, the loops interleaved
 * ROUNDS times (default 15); the best of each is reported, since this shared
 * machine's speed drifts. AVX2+FMA at least.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AVX2 __attribute__((target("avx2,fma")))

#define KSTEPS 256
#define REPEATS 50000L

static uint8_t a8[KSTEPS * 24] __attribute__((aligned(64)));
static int8_t b8[KSTEPS * 64] __attribute__((aligned(64)));
static float af[KSTEPS * 6] __attribute__((aligned(64)));
static float bf[KSTEPS * 16] __attribute__((aligned(64)));
static uint32_t a32[KSTEPS * 12] __attribute__((aligned(64)));	/* AVX-512 tiles: 12 rows of words */
static uint32_t b32[KSTEPS * 32] __attribute__((aligned(64)));	/* and two panels of 16 words */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Four bytes as one 32-bit lane. */
static inline int32_t
four_bytes(const uint8_t *p)
{
	int32_t		v;

	memcpy(&v, p, 4);
	return v;
}

/* Sum of a tile's twelve 32-bit accumulators' first lanes, so nothing is optimized away. */
#define FOLD_I(acc) \
	do { \
		int32_t		s = 0; \
		for (int i_ = 0; i_ < 12; i_++) \
			s += _mm256_extract_epi32(acc[i_], 0); \
		return s; \
	} while (0)

/*
 * An integer tile: per step, a broadcast of 4 bytes of each of 6 rows and two
 * 32-byte loads of the panel; PRODUCT(x, b) gives eight 32-bit sums to add.
 */
#define INT_TILE_LOOP(name, PRODUCT) \
AVX2 __attribute__((noinline)) static int32_t \
name(void) \
{ \
	const __m256i ones = _mm256_set1_epi16(1); \
	__m256i		acc[12]; \
\
	(void) ones; \
	for (int i = 0; i < 12; i++) \
		acc[i] = _mm256_setzero_si256(); \
	for (long n = 0; n < REPEATS; n++) \
	{ \
		const uint8_t *a = a8; \
		const int8_t *b = b8; \
\
		for (int k = 0; k < KSTEPS; k++, a += 24, b += 64) \
		{ \
			__m256i		b0 = _mm256_load_si256((const __m256i *) b), \
						b1 = _mm256_load_si256((const __m256i *) (b + 32)); \
\
			_Pragma("GCC unroll 6") \
			for (int r = 0; r < 6; r++) \
			{ \
				__m256i		x = _mm256_set1_epi32(four_bytes(a + 4 * r)); \
\
				acc[2 * r] = _mm256_add_epi32(acc[2 * r], PRODUCT(x, b0)); \
				acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], PRODUCT(x, b1)); \
			} \
		} \
	} \
	FOLD_I(acc); \
}

/* The 8-bit tile (gemm_q8.c): 4 k per step, 6 x 16 x 4 multiply-adds. */
#define U8S8(x, b) _mm256_madd_epi16(_mm256_maddubs_epi16(x, b), ones)
INT_TILE_LOOP(loop_u8s8, U8S8)

/* The 16-bit tile: 2 k per step, 6 x 16 x 2 multiply-adds. */
#define S16(x, b) _mm256_madd_epi16(x, b)
INT_TILE_LOOP(loop_s16, S16)

/* The float32 tile: 1 k per step, 6 x 16 multiply-adds. */
AVX2 __attribute__((noinline)) static float
loop_f32(void)
{
	__m256		acc[12];
	float		s = 0.0f;

	for (int i = 0; i < 12; i++)
		acc[i] = _mm256_setzero_ps();
	for (long n = 0; n < REPEATS; n++)
	{
		const float *a = af,
				   *b = bf;

		for (int k = 0; k < KSTEPS; k++, a += 6, b += 16)
		{
			__m256		b0 = _mm256_load_ps(b),
						b1 = _mm256_load_ps(b + 8);

#pragma GCC unroll 6
			for (int r = 0; r < 6; r++)
			{
				__m256		x = _mm256_broadcast_ss(a + r);

				acc[2 * r] = _mm256_fmadd_ps(x, b0, acc[2 * r]);
				acc[2 * r + 1] = _mm256_fmadd_ps(x, b1, acc[2 * r + 1]);
			}
		}
	}
	for (int i = 0; i < 12; i++)
		s += _mm256_cvtss_f32(acc[i]);
	return s;
}

/*
 * The AVX-512 tiles (gemm.c, gemm_bf16.c, gemm_q8.c): per step, a broadcast
 * of one 32-bit word of each of 12 rows and two 64-byte loads of the panels,
 * 24 accumulators. INSN is the instruction, written as asm with the
 * accumulator tied to its output, as gemm_q8.c's dpbusd() (GCC 12 copies the
 * accumulator around the intrinsics); it does 1, 2 or 4 multiply-adds per lane.
 */
#define ZMM_TILE_LOOP(name, isa, INSN) \
__attribute__((target(isa), noinline)) static float \
name(void) \
{ \
	__m512		acc[24]; \
	float		s = 0.0f; \
\
	_Pragma("GCC unroll 24") \
	for (int i = 0; i < 24; i++) \
		acc[i] = _mm512_setzero_ps(); \
	for (long n = 0; n < REPEATS / 4; n++) \
	{ \
		const uint32_t *a = a32, \
				   *b = b32; \
\
		for (int k = 0; k < KSTEPS; k++, a += 12, b += 32) \
		{ \
			__m512		b0 = _mm512_load_ps((const float *) b), \
						b1 = _mm512_load_ps((const float *) (b + 16)); \
\
			_Pragma("GCC unroll 12") \
			for (int r = 0; r < 12; r++) \
			{ \
				__m512		x = _mm512_castsi512_ps(_mm512_set1_epi32((int) a[r])); \
\
				__asm__(INSN " %2, %1, %0" : "+v"(acc[2 * r]) : "v"(x), "v"(b0)); \
				__asm__(INSN " %2, %1, %0" : "+v"(acc[2 * r + 1]) : "v"(x), "v"(b1)); \
			} \
		} \
	} \
	_Pragma("GCC unroll 24") \
	for (int i = 0; i < 24; i++) \
		s += _mm512_cvtss_f32(acc[i]); \
	return s; \
}

ZMM_TILE_LOOP(loop_zmm_f32, "avx512f", "vfmadd231ps")
ZMM_TILE_LOOP(loop_zmm_bf16, "avx512f,avx512bf16", "vdpbf16ps")
ZMM_TILE_LOOP(loop_zmm_u8s8, "avx512f,avx512vnni", "vpdpbusd")

/* The AVX-512 loops this CPU has: name, multiply-adds per step, the loop, and whether it runs here. */
static const struct
{
	const char *name;
	double		macs_per_step;
	float		(*loop) (void);
	const char *feature;
}			zmm_loops[3] = {
	{"float32 vfmadd231ps zmm (gemm.c avx512)", 12 * 32, loop_zmm_f32, "avx512f"},
	{"bf16 vdpbf16ps zmm (gemm_bf16.c)", 12 * 32 * 2, loop_zmm_bf16, "avx512bf16"},
	{"u8 x s8 vpdpbusd zmm (gemm_q8.c vnni)", 12 * 32 * 4, loop_zmm_u8s8, "avx512vnni"},
};

/* Whether the CPU (and the OS) run zmm_loops[i]. */
static bool
zmm_loop_runs(int i)
{
	return __builtin_cpu_supports("avx512f") &&
		(i == 0 || (i == 1 ? __builtin_cpu_supports("avx512bf16") : __builtin_cpu_supports("avx512vnni")));
}

int
main(int argc, char **argv)
{
	static const char *names[3] = {"float32 FMA (gemm.c)", "u8 x s8 maddubs+madd+add (gemm_q8.c)",
	"s16 x s16 madd+add"};
	static const double macs_per_step[3] = {6 * 16, 6 * 16 * 4, 6 * 16 * 2};
	int			rounds = argc > 1 ? atoi(argv[1]) : 15;
	double		best[3] = {0, 0, 0},
				zmm_best[3] = {0, 0, 0};
	double		sink = 0;

	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
	{
		fprintf(stderr, "mac_peak: needs AVX2 and FMA\n");
		return 1;
	}
	for (int i = 0; i < KSTEPS * 24; i++)
		a8[i] = (uint8_t) (i * 37);
	for (int i = 0; i < KSTEPS * 64; i++)
		b8[i] = (int8_t) ((i * 11) % 127 - 63);
	for (int i = 0; i < KSTEPS * 6; i++)
		af[i] = (float) (i % 7) * 0.01f;
	for (int i = 0; i < KSTEPS * 16; i++)
		bf[i] = (float) (i % 5) * 0.001f;
	for (int i = 0; i < KSTEPS * 12; i++)
		a32[i] = 0x3f803f80u + (uint32_t) (i % 3);	/* bf16 pairs near 1, or bytes near 0x80 */
	for (int i = 0; i < KSTEPS * 32; i++)
		b32[i] = 0x3c003c00u + (uint32_t) (i % 5);
	for (int r = 0; r < rounds; r++)
	{
		for (int v = 0; v < 3; v++)
		{
			double		t0 = now(),
						gmacs;

			sink += v == 0 ? loop_f32() : v == 1 ? loop_u8s8() : loop_s16();
			gmacs = REPEATS * KSTEPS * macs_per_step[v] / (now() - t0) / 1e9;
			if (gmacs > best[v])
				best[v] = gmacs;
		}
		for (int v = 0; v < 3; v++)
		{
			double		t0 = now(),
						gmacs;

			if (!zmm_loop_runs(v))
				continue;
			sink += zmm_loops[v].loop();
			gmacs = REPEATS / 4 * KSTEPS * zmm_loops[v].macs_per_step / (now() - t0) / 1e9;
			if (gmacs > zmm_best[v])
				zmm_best[v] = gmacs;
		}
	}
	for (int v = 0; v < 3; v++)
		printf("{\"loop\": \"%s\", \"gmac_per_s\": %.1f, \"vs_float32\": %.2f}\n", names[v], best[v],
			   best[v] / best[0]);
	for (int v = 0; v < 3; v++)
		if (zmm_loop_runs(v))
			printf("{\"loop\": \"%s\", \"gmac_per_s\": %.1f, \"vs_float32\": %.2f}\n", zmm_loops[v].name,
				   zmm_best[v], zmm_best[v] / best[0]);
	return sink == 12345.0;		/* keeps the results live */
}
