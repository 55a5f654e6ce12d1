/*
 * amx.h - the AMX tile configuration gemm_bf16.c and gemm_q8.c share, and
 * the zeroing and storing of their sums: eight tiles of 16 rows by 64 bytes.
 * Tiles 0-3 hold a 2 x 2 block of 16 x 16 32-bit sums, 4 and 5 two 16-row
 * slices of inputs (32 bf16 or 64 bytes per row), 6 and 7 two panels' slices
 * (16 rows of 16 outputs x 4 bytes), which is the weights' layout in both
 * files, so the weights load as they are. The multiply loops stay in each
 * file: tdpbf16ps and tdpbusd need different target features.
 * Include after <immintrin.h>, on x86-64 only. PostgreSQL-free.
 */
#ifndef PGBERT_AMX_H
#define PGBERT_AMX_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The 64-byte operand of ldtilecfg: palette 1, each tile's rows and bytes per row. */
typedef struct BtTileConfig
{
	uint8_t		palette;
	uint8_t		start_row;
	uint8_t		reserved[14];
	uint16_t	bytes_per_row[16];
	uint8_t		rows[16];
} __attribute__((packed, aligned(64))) BtTileConfig;

/* Load the configuration above into this thread's tile registers (undo with bt_amx_release). */
__attribute__((target("amx-tile"))) static inline void
bt_amx_configure(void)
{
	BtTileConfig cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int t = 0; t < 8; t++)
	{
		cfg.rows[t] = 16;
		cfg.bytes_per_row[t] = 64;
	}
	/* GCC 12 does not see ldtilecfg read cfg and would drop the stores above */
	__asm__ volatile("" : : "r"(&cfg) : "memory");
	_tile_loadconfig(&cfg);
}

/* Give this thread's tile state back (so that the kernel need not save it on a context switch). */
__attribute__((target("amx-tile"))) static inline void
bt_amx_release(void)
{
	_tile_release();
}

/* Zero tiles 0-3, the 2 x 2 block of sums. */
__attribute__((target("amx-tile"))) static inline __attribute__((always_inline)) void
bt_amx_zero_sums(void)
{
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
}

/*
 * Store the sums of tiles 0-3 into c (32 rows of 32 four-byte sums); with
 * one panel (two false) only its column of tiles, 0 and 2.
 */
__attribute__((target("amx-tile"))) static inline __attribute__((always_inline)) void
bt_amx_store_sums(void *c, bool two)
{
	char	   *at = c;

	_tile_stored(0, at, 32 * 4);
	_tile_stored(2, at + 16 * 32 * 4, 32 * 4);
	if (two)
	{
		_tile_stored(1, at + 16 * 4, 32 * 4);
		_tile_stored(3, at + (16 * 32 + 16) * 4, 32 * 4);
	}
}

#endif
