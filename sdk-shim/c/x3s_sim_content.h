/*
 * x3s_sim_content.h: the simulated SDK's deterministic frame content, shared by the simulator
 * (xsp3_sim.c) and by x3s_sim_expected_frame (x3s.c). The formula is documented in
 * docs/sdk-sim.md; keep the two in step.
 */
#ifndef X3S_SIM_CONTENT_H
#define X3S_SIM_CONTENT_H

#include <stdint.h>

#include "x3s.h"

#define X3S_SIM_BINS 4096u
#define X3S_SIM_CLOCK_HZ 80000000u

/* The documented defaults of every simulator parameter. */
void x3s_sim_params_defaults(x3s_sim_params *p);

/* Counter-based hash (splitmix64 finaliser of x + golden gamma). */
uint64_t x3s_sim_splitmix64(uint64_t x);

/* Per-channel tables of the spectrum content: lambda (expected counts) and the noise half width
 * s, for channels c % 4 == 0..3 (the content depends on the channel only through c % 4 there). */
typedef struct x3s_sim_table {
    uint32_t lam[4][X3S_SIM_BINS];
    uint32_t s[4][X3S_SIM_BINS];
} x3s_sim_table;

void x3s_sim_table_row(const x3s_sim_params *p, uint32_t chan, uint32_t *lam, uint32_t *s);
void x3s_sim_table_init(const x3s_sim_params *p, x3s_sim_table *t);

/* The spectrum of (frame, chan): X3S_SIM_BINS words into dst. t: the tables, or NULL to compute
 * them on the way (slower, no state). */
void x3s_sim_gen_mca(const x3s_sim_params *p, const x3s_sim_table *t, uint64_t frame,
                     uint32_t chan, uint32_t *dst);

/*
 * The 9 scalers of (frame, chan). mca is that channel's spectrum (X3S_SIM_BINS words); it may be
 * NULL for pattern content, whose sums are computed in closed form.
 * win: low0, high0, low1, high1 (inclusive).
 */
void x3s_sim_gen_scalers(const x3s_sim_params *p, uint64_t frame, uint32_t chan,
                         uint32_t exposure_ticks, const uint32_t win[4], uint32_t good_thres,
                         const uint32_t *mca, uint32_t *sc);

#endif
