/*
 * x3s_frame_addr.h: how the SDK addresses a frame in its circular buffer. One rule, used by the
 * shim for every read and every acknowledgement, and by the simulated SDK to place frames.
 *
 * The SDK extends the hardware frame counter to 64 bits in software. Its read calls and
 * xsp3_histogram_circ_ack take the low 32 bits of that frame number and reduce them modulo the
 * buffer depth (reference section 2.4; EPICS and Odin pass the frame number itself). So frame f
 * lives in slot (f mod 2^32) mod depth. When the depth does not divide 2^32, that differs from
 * f mod depth from frame 2^32 on: passing f mod depth to some calls and f to others addresses
 * different slots there. And at 2^32 the slots restart at 0 (x3s_sdk_overwriter).
 */
#ifndef X3S_FRAME_ADDR_H
#define X3S_FRAME_ADDR_H

#include <stdint.h>

/* The value passed to the SDK for frame `frame`. */
static inline uint32_t x3s_sdk_tf(uint64_t frame)
{
    return (uint32_t)frame;
}

/* The buffer slot that holds frame `frame` (ring >= 1). */
static inline uint64_t x3s_sdk_slot(uint64_t frame, uint64_t ring)
{
    return (uint64_t)x3s_sdk_tf(frame) % ring;
}

/*
 * How many of the n frames from `frame` one SDK call can address: they must occupy consecutive
 * slots (not past the end of the buffer) and consecutive 32-bit addresses (not past 2^32 - 1).
 * Returns 1..n for n >= 1 (ring >= 1).
 */
static inline uint32_t x3s_sdk_run(uint64_t frame, uint32_t n, uint64_t ring)
{
    uint64_t room = ring - x3s_sdk_slot(frame, ring);
    uint64_t to_wrap = (uint64_t)UINT32_MAX + 1u - x3s_sdk_tf(frame);
    if (to_wrap < room)
        room = to_wrap;
    return (uint64_t)n < room ? n : (uint32_t)room;
}

/*
 * The first frame after `frame` that the SDK puts in the same slot, overwriting it: frame + ring,
 * or, when the 32-bit address wraps before that (at W, the next multiple of 2^32), W + slot: at
 * the wrap the slots restart at 0, so with a depth that does not divide 2^32 the frames just
 * before W are overwritten sooner than `ring` frames later.
 */
static inline uint64_t x3s_sdk_overwriter(uint64_t frame, uint64_t ring)
{
    uint64_t wrap = (frame | (uint64_t)UINT32_MAX) + 1u;
    uint64_t next = frame + ring;
    return next < wrap ? next : wrap + x3s_sdk_slot(frame, ring);
}

#endif
