/*
 * bench_gemm_onednn.c - the engine's dense-layer kernels against oneDNN's
 * matmul on the encoder's GEMM shapes, one thread, in float32, bf16 and int8:
 * the measurement behind the choice of GEMM in docs/engine.md.
 *
 *   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 bench_gemm_onednn [SECONDS_PER_SHAPE]
 *
 * Built by `make bench-onednn` (needs Debian's libdnnl-dev; oneDNN is never
 * a dependency of pgbert itself). Each side computes out = in W^T + b for T
 * rows, O outputs, K inputs and reports its best GFLOP/s (two operations per
 * multiply-add, in every precision). oneDNN gets its best case: a matmul
 * primitive created once per shape, weights reordered once into the layout
 * it asks for (format "any"), and for bf16 and int8 inputs already converted
 * or quantized (one scale and zero point for the whole input, as ONNX
 * Runtime's dynamic int8 uses). The engine's timings include what it does on
 * every call: converting the inputs to bf16, or quantizing each input row
 * with its own scale and zero point. The first line names the ISA path.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>

#include "blas.h"
#include "cpu.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_q8.h"
#include "simd.h"

#define CHECK(call) \
	do { \
		dnnl_status_t st_ = (call); \
		if (st_ != dnnl_success) \
		{ \
			fprintf(stderr, "bench_gemm_onednn: %s failed (%d)\n", #call, (int) st_); \
			exit(1); \
		} \
	} while (0)

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
fill(float *x, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
	{
		seed = seed * 1103515245u + 12345u;
		x[i] = ((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
	}
}

/* float to bf16 by rounding to nearest even (inputs here are finite). */
static uint16_t
to_bf16(float x)
{
	uint32_t	u;

	memcpy(&u, &x, 4);
	return (uint16_t) ((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* One oneDNN matmul, ready to run: its primitive and its memories. */
typedef struct OneDnnMatmul
{
	dnnl_primitive_t prim;
	dnnl_memory_t src,
				wei,
				bias,
				dst,
				zp;				/* the input's zero point (int8), or NULL */
	void	   *wei_data;		/* the reordered weights' buffer */
} OneDnnMatmul;

static dnnl_engine_t engine;
static dnnl_stream_t stream;

/* A plain memory of desc md holding data (not copied). */
static dnnl_memory_t
memory_of(const dnnl_memory_desc_t *md, void *data)
{
	dnnl_memory_t m;

	CHECK(dnnl_memory_create(&m, md, engine, data));
	return m;
}

/*
 * The matmul (T, K) x (K, O) + bias -> (T, O) float32 in type dt (f32, bf16,
 * or u8 inputs by s8 weights), from weights w given as (O, K) row-major:
 * reordered once into the layout the primitive chose. For int8, out_scale
 * (O) scales each output and zp is the input's zero point.
 */
static OneDnnMatmul
make_matmul(dnnl_data_type_t dt, int T, int O, int K, void *src, const void *w_ok, float *bias, float *dst,
			const float *out_scale, int32_t *zp)
{
	OneDnnMatmul mm = {0};
	dnnl_data_type_t wdt = dt == dnnl_u8 ? dnnl_s8 : dt;
	dnnl_memory_desc_t src_md,
				wei_any,
				wei_user,
				bias_md,
				dst_md,
				zp_md;
	dnnl_dims_t src_dims = {T, K},
				wei_dims = {K, O},
				bias_dims = {1, O},
				dst_dims = {T, O},
				zp_dims = {1};
	dnnl_matmul_desc_t desc;
	dnnl_primitive_attr_t attr;
	dnnl_primitive_desc_t pd,
				reorder_pd;
	dnnl_primitive_t reorder;
	dnnl_memory_t user_w;
	const dnnl_memory_desc_t *wei_md;
	size_t		wei_bytes;

	CHECK(dnnl_memory_desc_init_by_tag(&src_md, 2, src_dims, dt, dnnl_ab));
	CHECK(dnnl_memory_desc_init_by_tag(&wei_any, 2, wei_dims, wdt, dnnl_format_tag_any));
	CHECK(dnnl_memory_desc_init_by_tag(&wei_user, 2, wei_dims, wdt, dnnl_ba));	/* (O, K) row-major */
	CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 2, bias_dims, dnnl_f32, dnnl_ab));
	CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dst_dims, dnnl_f32, dnnl_ab));
	CHECK(dnnl_matmul_desc_init(&desc, &src_md, &wei_any, &bias_md, &dst_md));
	CHECK(dnnl_primitive_attr_create(&attr));
	if (dt == dnnl_u8)
	{
		CHECK(dnnl_primitive_attr_set_output_scales(attr, O, 1 << 1, out_scale));
		CHECK(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, (const int32_t[]) {DNNL_RUNTIME_S32_VAL}));
	}
	CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
	CHECK(dnnl_primitive_create(&mm.prim, pd));

	wei_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	wei_bytes = dnnl_memory_desc_get_size(wei_md);
	mm.wei_data = aligned_alloc(64, (wei_bytes + 63) / 64 * 64);
	mm.wei = memory_of(wei_md, mm.wei_data);
	user_w = memory_of(&wei_user, (void *) w_ok);
	CHECK(dnnl_reorder_primitive_desc_create(&reorder_pd, &wei_user, engine, wei_md, engine, NULL));
	CHECK(dnnl_primitive_create(&reorder, reorder_pd));
	{
		dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, mm.wei}};

		CHECK(dnnl_primitive_execute(reorder, stream, 2, args));
		CHECK(dnnl_stream_wait(stream));
	}
	dnnl_primitive_destroy(reorder);
	dnnl_primitive_desc_destroy(reorder_pd);
	dnnl_memory_destroy(user_w);

	mm.src = memory_of(&src_md, src);
	mm.bias = memory_of(&bias_md, bias);
	mm.dst = memory_of(&dst_md, dst);
	if (dt == dnnl_u8)
	{
		CHECK(dnnl_memory_desc_init_by_tag(&zp_md, 1, zp_dims, dnnl_s32, dnnl_a));
		mm.zp = memory_of(&zp_md, zp);
	}
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	return mm;
}

/* Run the matmul once. */
static void
run_matmul(const OneDnnMatmul *mm)
{
	dnnl_exec_arg_t args[5] = {
		{DNNL_ARG_SRC, mm->src}, {DNNL_ARG_WEIGHTS, mm->wei}, {DNNL_ARG_BIAS, mm->bias}, {DNNL_ARG_DST, mm->dst},
		{DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, mm->zp},
	};

	CHECK(dnnl_primitive_execute(mm->prim, stream, mm->zp ? 5 : 4, args));
	CHECK(dnnl_stream_wait(stream));
}

/* The engine's kernels and oneDNN's, by index. */
enum
{
	OURS_F32, ONEDNN_F32, OURS_BF16, ONEDNN_BF16, OURS_INT8, ONEDNN_INT8, IMPLS
};

/* Compute out once with implementation impl; false when this CPU cannot run it. */
static bool
run_impl(int impl, const OneDnnMatmul *mm, float *out, const float *in, int T, int O, int K, const float *wp,
		 const BtBf16Weight *wb, const BtQ8Weight *wq, const float *b, bool bf16, bool int8)
{
	if ((impl == OURS_BF16 || impl == ONEDNN_BF16) && !bf16)
		return false;
	if (impl == OURS_INT8 && !int8)
		return false;
	if (impl == OURS_F32)
		bt_gemm_packed(out, O, in, T, wp, b, O, K, 0, bt_gemm_panels(O), NULL);
	else if (impl == OURS_BF16)
		bt_gemm_bf16(out, O, in, T, wb, b, 0, O / 16, NULL);
	else if (impl == OURS_INT8)
		bt_gemm_q8(out, O, in, T, wq, b, 0, O / 16, NULL);
	else
		run_matmul(&mm[impl]);
	return true;
}

int
main(int argc, char **argv)
{
	static const int shapes[][3] = {
		{16, 1152, 384}, {16, 384, 384}, {16, 1536, 384}, {16, 384, 1536},
		{256, 1152, 384}, {256, 384, 384}, {256, 1536, 384}, {256, 384, 1536},
		{4096, 1536, 384}, {4096, 384, 1536},
		{256, 2304, 768}, {256, 768, 768}, {256, 3072, 768}, {256, 768, 3072},
	};
	double		seconds = argc > 1 ? atof(argv[1]) : 1.0;
	char		err[256];
	bool		bf16 = bt_cpu_bf16(),
				int8 = bt_simd_avx2();

	if (bt_blas_load(NULL, 1, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "bench_gemm_onednn: %s\n", err);
		return 1;
	}
	CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
	CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
	bt_cpu_describe(err, sizeof(err));
	printf("1 thread, path %s, oneDNN %d.%d.%d\n\n", err, dnnl_version()->major, dnnl_version()->minor,
		   dnnl_version()->patch);
	printf("| T | O | K | pgbert f32 | oneDNN f32 | ratio | pgbert bf16 | oneDNN bf16 | ratio | pgbert int8 |"
		   " oneDNN int8 | ratio |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		int			T = shapes[i][0],
					O = shapes[i][1],
					K = shapes[i][2];
		float	   *w = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *wp = aligned_alloc(64, (size_t) O * K * sizeof(float)),
				   *scratch = malloc((size_t) O * K * sizeof(float)),
				   *b = malloc(O * sizeof(float)),
				   *in = malloc((size_t) T * K * sizeof(float)),
				   *out = malloc((size_t) T * O * sizeof(float)),
				   *wscale = malloc(O * sizeof(float)),
				   *oscale = malloc(O * sizeof(float)),
				   *bscaled = malloc(O * sizeof(float));
		uint16_t   *in16 = malloc((size_t) T * K * 2),
				   *w16 = malloc((size_t) O * K * 2);
		uint8_t    *in8 = malloc((size_t) T * K);
		int8_t	   *w8 = malloc((size_t) O * K);
		int32_t		zp;
		float		lo = 0,
					hi = 0,
					sx;
		double		best[IMPLS] = {0},
					flop = 2.0 * T * O * K;
		BtBf16Weight wb;
		BtQ8Weight	wq;
		void	   *wb_mem = aligned_alloc(64, bt_bf16_bytes(O, K)),
				   *wq_mem = aligned_alloc(64, bt_q8_bytes(O, K));
		OneDnnMatmul mm[IMPLS] = {{0}};

		fill(w, (size_t) O * K, 2);
		fill(b, O, 3);
		fill(in, (size_t) T * K, 1);
		memcpy(wp, w, (size_t) O * K * sizeof(float));
		bt_gemm_pack(wp, O, K, scratch);
		if (bf16)
			bt_bf16_convert(&wb, wb_mem, wp, O, K, 1);
		bt_q8_quantize(&wq, wq_mem, w, O, K, 0);

		/* oneDNN's inputs: bf16 copies, and 8-bit ones with one range for the whole input */
		for (size_t j = 0; j < (size_t) T * K; j++)
		{
			in16[j] = to_bf16(in[j]);
			lo = fminf(lo, in[j]);
			hi = fmaxf(hi, in[j]);
		}
		for (size_t j = 0; j < (size_t) O * K; j++)
			w16[j] = to_bf16(w[j]);
		sx = (hi - lo) / 255.0f;
		zp = (int32_t) nearbyintf(-lo / sx);
		for (size_t j = 0; j < (size_t) T * K; j++)
		{
			long		u = lrintf(in[j] / sx) + zp;

			in8[j] = (uint8_t) (u < 0 ? 0 : u > 255 ? 255 : u);
		}
		for (int o = 0; o < O; o++)
		{
			float		m = 0;

			for (int k = 0; k < K; k++)
				m = fmaxf(m, fabsf(w[(size_t) o * K + k]));
			wscale[o] = m / 127.0f;
			oscale[o] = sx * wscale[o];
			for (int k = 0; k < K; k++)
				w8[(size_t) o * K + k] = (int8_t) lrintf(w[(size_t) o * K + k] / wscale[o]);
		}
		mm[ONEDNN_F32] = make_matmul(dnnl_f32, T, O, K, in, w, b, out, NULL, NULL);
		if (bf16)
			mm[ONEDNN_BF16] = make_matmul(dnnl_bf16, T, O, K, in16, w16, b, out, NULL, NULL);
		/* oneDNN 2's int8 matmul adds the bias before the output scales: give it the bias divided by them */
		for (int o = 0; o < O; o++)
			bscaled[o] = b[o] / oscale[o];
		mm[ONEDNN_INT8] = make_matmul(dnnl_u8, T, O, K, in8, w8, bscaled, out, oscale, &zp);

		/* every side computes the same product (within its precision) before it is timed */
		{
			float	   *ref = malloc((size_t) T * O * sizeof(float));

			for (int t = 0; t < T; t++)
				memcpy(ref + (size_t) t * O, b, O * sizeof(float));
			bt_sgemm(BT_ROW_MAJOR, BT_NO_TRANS, BT_TRANS, T, O, K, 1.0f, in, K, w, K, 1.0f, ref, O);
			for (int impl = 0; impl < IMPLS; impl++)
			{
				double		worst = 0,
							scale = 0;

				if (!run_impl(impl, mm, out, in, T, O, K, wp, &wb, &wq, b, bf16, int8))
					continue;
				for (size_t j = 0; j < (size_t) T * O; j++)
				{
					worst = fmax(worst, fabs(out[j] - ref[j]));
					scale = fmax(scale, fabs(ref[j]));
				}
				if (worst > (impl < OURS_BF16 ? 1e-4 : 3e-2) * scale)
				{
					fprintf(stderr, "bench_gemm_onednn: implementation %d is off by %g (largest output %g) on %dx%dx%d\n",
							impl, worst, scale, T, O, K);
					return 1;
				}
			}
			free(ref);
		}
		for (int impl = 0; impl < IMPLS; impl++)
		{
			double		start = now();

			if (!run_impl(impl, mm, out, in, T, O, K, wp, &wb, &wq, b, bf16, int8))
				continue;
			while (now() - start < seconds)
			{
				double		t0 = now(),
							t;

				run_impl(impl, mm, out, in, T, O, K, wp, &wb, &wq, b, bf16, int8);
				t = now() - t0;
				if (flop / t / 1e9 > best[impl])
					best[impl] = flop / t / 1e9;
			}
		}
		printf("| %d | %d | %d |", T, O, K);
		for (int impl = 0; impl < IMPLS; impl += 2)
		{
			if (best[impl] > 0 && best[impl + 1] > 0)
				printf(" %.1f | %.1f | %.2f× |", best[impl], best[impl + 1], best[impl] / best[impl + 1]);
			else
				printf(" – | – | – |");
		}
		printf("\n");
		for (int impl = 0; impl < IMPLS; impl++)
			if (mm[impl].prim)
			{
				dnnl_primitive_destroy(mm[impl].prim);
				dnnl_memory_destroy(mm[impl].src);
				dnnl_memory_destroy(mm[impl].wei);
				dnnl_memory_destroy(mm[impl].bias);
				dnnl_memory_destroy(mm[impl].dst);
				if (mm[impl].zp)
					dnnl_memory_destroy(mm[impl].zp);
				free(mm[impl].wei_data);
			}
		free(w);
		free(wp);
		free(scratch);
		free(b);
		free(in);
		free(out);
		free(wscale);
		free(oscale);
		free(bscaled);
		free(in16);
		free(w16);
		free(in8);
		free(w8);
		free(wb_mem);
		free(wq_mem);
	}
	dnnl_stream_destroy(stream);
	dnnl_engine_destroy(engine);
	return 0;
}
