/*
 * batch_scan.h - transparent batching of per-row classify(), classify_scores()
 * and embed() calls (batch_scan.c): a planner hook and the PgbertBatch node.
 */
#ifndef PGBERT_BATCH_SCAN_H
#define PGBERT_BATCH_SCAN_H

/* Define pgbert.batching and pgbert.batch_rows, register the node, install the hook (_PG_init). */
extern void pgbert_batch_scan_init(void);

#endif
