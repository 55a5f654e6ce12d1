/*
 * engine_main.c - pgbert_engine, the program the encoder worker starts to run
 * models out of PostgreSQL's process tree (see serve.h).
 *
 *   pgbert_engine FD DEVICE THREADS
 *
 * FD is the worker's end of a connected stream socket, already open. The
 * program answers requests on it until the worker closes it or dies.
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

	if (argc != 4)
	{
		fprintf(stderr, "usage: pgbert_engine FD DEVICE THREADS\n");
		return 2;
	}
	fd = atoi(argv[1]);
	threads = atoi(argv[3]);
	/* a closed socket shows as a failed write, not a signal */
	signal(SIGPIPE, SIG_IGN);
	/* the worker's terminal signals are not ours: it ends us by closing the socket */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_DFL);
	return bt_serve(fd, argv[2], threads < 1 ? 1 : threads);
}
