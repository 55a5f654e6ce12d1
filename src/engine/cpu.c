/*
 * cpu.c - the instruction-set path of the engine's kernels (see cpu.h).
 */
#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BT_PORTABLE)

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023	/* arch_prctl: ask for an XSAVE feature's state */
#define XFEATURE_XTILEDATA 18

/* Ask Linux for the AMX tile state; the permission holds for every thread of the process. */
static bool
request_amx(void)
{
#ifdef SYS_arch_prctl
	return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
	return false;
#endif
}

/* XCR0: which register state the OS saves on a context switch. */
static unsigned long long
read_xcr0(void)
{
	unsigned int eax,
				edx;

	__asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
	return ((unsigned long long) edx << 32) | eax;
}

/* Fill f from CPUID; a feature counts only when the OS also saves its registers. */
static void
detect(BtCpuFeatures *f)
{
	unsigned int a,
				b,
				c,
				d,
				max_leaf = __get_cpuid_max(0, NULL);
	unsigned long long xcr0 = 0;
	bool		os_avx,
				os_zmm,
				os_amx;

	memset(f, 0, sizeof(*f));
	if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &c, &d))
		return;
	if (c & (1u << 27))			/* OSXSAVE: xgetbv may be used */
		xcr0 = read_xcr0();
	os_avx = (xcr0 & 0x6) == 0x6;	/* XMM and YMM */
	os_zmm = os_avx && (xcr0 & 0xe0) == 0xe0;	/* opmask, ZMM0-15 upper halves, ZMM16-31 */
	os_amx = (xcr0 & 0x60000) == 0x60000;	/* TILECFG and TILEDATA */
	{
		bool		fma = (c >> 12) & 1,
					amx_int8;

		__cpuid_count(7, 0, a, b, c, d);
		f->avx2_fma = os_avx && fma && ((b >> 5) & 1);
		f->avx512 = f->avx2_fma && os_zmm && ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) &&
			((b >> 31) & 1);
		f->avx512_vnni = f->avx512 && ((c >> 11) & 1);
		f->amx = f->avx512 && os_amx && ((d >> 22) & 1) && ((d >> 24) & 1);	/* AMX-BF16, AMX-TILE */
		amx_int8 = (d >> 25) & 1;
		__cpuid_count(7, 1, a, b, c, d);
		f->avx512_bf16 = f->avx512 && ((a >> 5) & 1);
		f->amx = f->amx && f->avx512_bf16 && request_amx();
		f->amx_int8 = f->amx && amx_int8;
	}
}

#else							/* not x86-64, or the fast kernels compiled out */

static void
detect(BtCpuFeatures *f)
{
	memset(f, 0, sizeof(*f));
}

#endif

static BtCpuFeatures features;
static int	chosen = -1;		/* the path, once known; racing first calls agree */

/* The best path the features allow. */
static BtCpuPath
best_path(const BtCpuFeatures *f)
{
	return f->amx ? BT_CPU_AMX : f->avx512 ? BT_CPU_AVX512 : f->avx2_fma ? BT_CPU_AVX2 : BT_CPU_PORTABLE;
}

/* That path, capped by PGBERT_CPU_PATH when it names a lower one. */
static BtCpuPath
choose(const BtCpuFeatures *f)
{
	BtCpuPath	best = best_path(f);
	const char *cap = getenv("PGBERT_CPU_PATH");

	for (int p = BT_CPU_PORTABLE; cap != NULL && p < (int) best; p++)
		if (strcmp(cap, bt_cpu_path_name((BtCpuPath) p)) == 0)
			return (BtCpuPath) p;
	return best;
}

const BtCpuFeatures *
bt_cpu_features(void)
{
	(void) bt_cpu_path();
	return &features;
}

BtCpuPath
bt_cpu_path(void)
{
	int			p = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);

	if (p < 0)
	{
		BtCpuFeatures f;

		detect(&f);
		p = choose(&f);
		features = f;
		__atomic_store_n(&chosen, p, __ATOMIC_RELEASE);
	}
	return (BtCpuPath) p;
}

bool
bt_cpu_bf16(void)
{
	return bt_cpu_path() >= BT_CPU_AVX512 && features.avx512_bf16;
}

bool
bt_cpu_amx(void)
{
	return bt_cpu_path() >= BT_CPU_AMX;
}

bool
bt_cpu_amx_int8(void)
{
	return bt_cpu_path() >= BT_CPU_AMX && features.amx_int8;
}

bool
bt_cpu_vnni(void)
{
	return bt_cpu_path() >= BT_CPU_AVX512 && features.avx512_vnni;
}

const char *
bt_cpu_path_name(BtCpuPath path)
{
	switch (path)
	{
		case BT_CPU_AVX2:
			return "avx2";
		case BT_CPU_AVX512:
			return "avx512";
		case BT_CPU_AMX:
			return "amx";
		default:
			return "portable";
	}
}

/* "+bf16+vnni" for the AVX-512 extensions in f. */
static void
extensions(char *buf, size_t len, const BtCpuFeatures *f)
{
	snprintf(buf, len, "%s%s", f->avx512_bf16 ? "+bf16" : "", f->avx512_vnni ? "+vnni" : "");
}

void
bt_cpu_describe(char *buf, size_t len)
{
	BtCpuPath	path = bt_cpu_path(),
				best = best_path(&features);
	char		used[32] = "",
				all[32];

	if (path >= BT_CPU_AVX512)
		extensions(used, sizeof(used), &features);
	extensions(all, sizeof(all), &features);
	if (path < best)
		snprintf(buf, len, "%s%s (capped by PGBERT_CPU_PATH; cpu has %s%s)", bt_cpu_path_name(path), used,
				 bt_cpu_path_name(best), all);
	else
		snprintf(buf, len, "%s%s", bt_cpu_path_name(path), used);
}
