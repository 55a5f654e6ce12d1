/*
 * engine_main.c - pgbert_engine, the program the encoder worker starts to run
 * models out of PostgreSQL's process tree (see serve.h).
 *
 *   pgbert_engine FD DEVICE THREADS [GPU_MEMORY_MB [GPU_PRECISION]]
 *
 * FD is the worker's end of a connected stream socket, already open. The
 * program answers requests on it until the worker closes it or dies.
 * GPU_MEMORY_MB bounds the device memory (0: the card's), GPU_PRECISION is
 * bf16 or fp32 (see serve.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "serve.h"

int
main(int argc, char **argv)
{
	int			fd,
				threads;
	BtServeGpuOptions gpu = {NULL, 0};

	if (argc < 4 || argc > 6)
	{
		fprintf(stderr, "usage: pgbert_engine FD DEVICE THREADS [GPU_MEMORY_MB [GPU_PRECISION]]\n");
		return 2;
	}
	fd = atoi(argv[1]);
	threads = atoi(argv[3]);
	if (argc > 4)
		gpu.memory_limit = (size_t) strtoull(argv[4], NULL, 10) << 20;
	if (argc > 5)
		gpu.precision = argv[5];
	/* a closed socket shows as a failed write, not a signal */
	signal(SIGPIPE, SIG_IGN);
	/* the worker's terminal signals are not ours: it ends us by closing the socket */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_DFL);
	return bt_serve(fd, argv[2], threads < 1 ? 1 : threads, &gpu);
}
