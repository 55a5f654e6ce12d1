/*
 * blas.c - open OpenBLAS with dlopen at first use; see blas.h for why.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "blas.h"
#include "cpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

BtSgemmFn	bt_sgemm = NULL;

static void (*set_num_threads) (int) = NULL;
static int	(*get_num_threads) (void) = NULL;
static char loaded_path[512];

/* Try one library name; 0 when it provides cblas_sgemm. */
static int
try_open(const char *name, char *err, size_t errlen)
{
	void	   *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	void	   *sym;
	Dl_info		info;

	if (h == NULL)
	{
		const char *why = dlerror();

		snprintf(err, errlen, "could not load BLAS library \"%s\": %s", name, why ? why : "unknown error");
		return -1;
	}
	sym = dlsym(h, "cblas_sgemm");
	if (sym == NULL)
	{
		snprintf(err, errlen, "BLAS library \"%s\" has no cblas_sgemm", name);
		dlclose(h);
		return -1;
	}
	bt_sgemm = (BtSgemmFn) sym;
	set_num_threads = (void (*) (int)) dlsym(h, "openblas_set_num_threads");
	get_num_threads = (int (*) (void)) dlsym(h, "openblas_get_num_threads");
	if (dladdr(sym, &info) && info.dli_fname)
		snprintf(loaded_path, sizeof(loaded_path), "%s", info.dli_fname);
	else
		snprintf(loaded_path, sizeof(loaded_path), "%s", name);
	return 0;
}

int
bt_blas_load(const char *library, int threads, char *err, size_t errlen)
{
	static const char *const defaults[] = {"libopenblas.so.0", "libopenblas.so"};

	if (bt_sgemm == NULL)
	{
		if (threads > 0 && getenv("OPENBLAS_NUM_THREADS") == NULL)
		{
			char		n[16];

			snprintf(n, sizeof(n), "%d", threads);
			setenv("OPENBLAS_NUM_THREADS", n, 0);
		}
		/*
		 * OpenBLAS picks its kernels by CPU model, and a model newer than its
		 * tables gets the SSE3 "Prescott" ones (Debian's 0.3.21 on Emerald
		 * Rapids: a fifth of the attention products' speed). Name the kernels
		 * from the ISA path instead, unless the user named some.
		 */
		if (getenv("OPENBLAS_CORETYPE") == NULL && bt_cpu_path() >= BT_CPU_AVX2)
			setenv("OPENBLAS_CORETYPE", bt_cpu_path() >= BT_CPU_AVX512 ? "SkylakeX" : "Haswell", 0);
		if (library != NULL && library[0] != '\0')
		{
			if (try_open(library, err, errlen) < 0)
				return -1;
		}
		else
		{
			size_t		i;

			for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
				if (try_open(defaults[i], err, errlen) == 0)
					break;
			if (bt_sgemm == NULL)
				return -1;
		}
	}
	if (threads > 0)
		bt_blas_set_threads(threads);
	return 0;
}

void
bt_blas_set_threads(int threads)
{
	if (set_num_threads != NULL && threads > 0)
		set_num_threads(threads);
}

int
bt_blas_threads(void)
{
	int			n = get_num_threads != NULL ? get_num_threads() : 1;

	return n > 0 ? n : 1;
}

const char *
bt_blas_library(void)
{
	return loaded_path;
}
