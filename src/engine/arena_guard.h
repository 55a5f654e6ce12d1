/*
 * arena_guard.h - red zones between the views of one allocation, under
 * AddressSanitizer only.
 *
 * A forward pass and a training step carve their activations out of one
 * malloc'd arena (encode() in model.c, layout_acts() in train.c). ASan sees the
 * arena as one object, so a kernel that writes past the end of one view lands
 * in the next view unnoticed: the result is merely wrong, or the damage shows
 * up later as a crash somewhere else. Built with -fsanitize=address, each view
 * is followed by BT_GUARD_FLOATS poisoned floats, so such a write is reported
 * where it happens. Other builds get a gap of zero and no-op macros: their
 * layout and speed are unchanged.
 *
 * The parameter buffer (bt_model_alloc_params) is not guarded: it is copied,
 * zeroed and updated (AdamW) as one contiguous range on purpose.
 */
#ifndef BT_ARENA_GUARD_H
#define BT_ARENA_GUARD_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define BT_ARENA_GUARD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BT_ARENA_GUARD 1
#endif
#endif

#ifdef BT_ARENA_GUARD
#include <sanitizer/asan_interface.h>

/* 16 floats: 64 bytes, so views stay 64-byte aligned */
#define BT_GUARD_FLOATS ((size_t) 16)
#define bt_guard_poison(p, floats) ASAN_POISON_MEMORY_REGION((p), (floats) * sizeof(float))
#define bt_guard_unpoison(p, floats) ASAN_UNPOISON_MEMORY_REGION((p), (floats) * sizeof(float))
#else
#define BT_GUARD_FLOATS ((size_t) 0)
#define bt_guard_poison(p, floats) ((void) 0)
#define bt_guard_unpoison(p, floats) ((void) 0)
#endif

#endif							/* BT_ARENA_GUARD_H */
