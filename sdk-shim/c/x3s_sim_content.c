/*
 * x3s_sim_content.c: deterministic content of the simulated SDK (see docs/sdk-sim.md).
 *
 * Integer arithmetic only, so that any other implementation (numpy, Rust) reproduces it bit for
 * bit. The one floating-point step, floor(sqrt(lambda)) for lambda < 2^31, is exact in IEEE
 * double because sqrt is correctly rounded.
 */
#include "x3s_sim_content.h"

#include <math.h>
#include <string.h>

/* The fluorescence lines: centre bin, half width in bins, amplitude in counts per bin. */
static const struct {
    uint32_t centre, half_width, amplitude;
} k_peaks[] = {
    {640u, 12u, 400u},  /* Fe K-alpha, 6.40 keV at 10 eV per bin */
    {705u, 10u, 60u},   /* Fe K-beta */
    {805u, 14u, 250u},  /* Cu K-alpha */
    {1200u, 40u, 80u},  /* elastic scatter at 12 keV */
};

void x3s_sim_params_defaults(x3s_sim_params *p)
{
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->n_channels = 4;
    p->content = X3S_SIM_SPECTRUM;
    p->background = 0;
    p->amplitude_percent = 3;
    p->pileup_ppm = 2000;
    p->reset_rate_hz = 1000;
    p->reset_ticks = 200;
    p->event_width = 6;
    p->error_at_frame = X3S_SIM_NEVER;
    p->error_code = -1; /* XSP3_ERROR */
    p->stall_at_frame = X3S_SIM_NEVER;
}

uint64_t x3s_sim_splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void gen_pattern(uint64_t frame, uint32_t chan, uint32_t *dst)
{
    /* (frame + 3 chan + bin) mod 256: one 256-word period, then copies of it. */
    uint32_t base = (uint32_t)((frame + 3u * (uint64_t)chan) & 0xFFu);
    for (uint32_t b = 0; b < 256u; b++)
        dst[b] = (base + b) & 0xFFu;
    for (uint32_t b = 256u; b < X3S_SIM_BINS; b += 256u)
        memcpy(dst + b, dst, 256u * sizeof *dst);
}

void x3s_sim_table_row(const x3s_sim_params *p, uint32_t chan, uint32_t *lam, uint32_t *s)
{
    /* Expected counts lambda(chan, bin): background plus parabolic peaks. */
    for (uint32_t b = 0; b < X3S_SIM_BINS; b++)
        lam[b] = p->background;
    for (size_t i = 0; i < sizeof k_peaks / sizeof k_peaks[0]; i++) {
        uint64_t amp = (uint64_t)k_peaks[i].amplitude * p->amplitude_percent * (8u + chan % 4u) /
                       800u;
        int64_t w = k_peaks[i].half_width;
        int64_t w2 = w * w;
        int64_t c = k_peaks[i].centre;
        for (int64_t b = c - w + 1; b <= c + w - 1; b++) {
            if (b < 0 || b >= (int64_t)X3S_SIM_BINS)
                continue;
            int64_t d = b - c;
            lam[b] += (uint32_t)(amp * (uint64_t)(w2 - d * d) / (uint64_t)w2);
        }
    }
    /* Half width of the noise: s = (5 floor(sqrt(lambda))) >> 1. */
    for (uint32_t b = 0; b < X3S_SIM_BINS; b++)
        s[b] = (5u * (uint32_t)sqrt((double)lam[b])) >> 1;
}

void x3s_sim_table_init(const x3s_sim_params *p, x3s_sim_table *t)
{
    for (uint32_t c = 0; c < 4u; c++)
        x3s_sim_table_row(p, c, t->lam[c], t->s[c]);
}

/* Poisson-like noise: a triangular deviate of variance ~lambda from one hash per bin. */
static void gen_spectrum(const x3s_sim_params *p, const uint32_t *lam, const uint32_t *s,
                         uint64_t frame, uint32_t chan, uint32_t *dst)
{
    uint64_t key = x3s_sim_splitmix64(x3s_sim_splitmix64(p->seed) + (frame << 8) + chan);
    for (uint32_t b = 0; b < X3S_SIM_BINS; b++) {
        uint64_t u = x3s_sim_splitmix64(key + b);
        uint64_t tri = ((u & 0xFFFFu) + ((u >> 16) & 0xFFFFu)) * s[b] >> 16; /* 0 .. 2s-1 */
        int64_t v = (int64_t)lam[b] + (int64_t)tri - (int64_t)s[b];
        dst[b] = v > 0 ? (uint32_t)v : 0u;
    }
}

void x3s_sim_gen_mca(const x3s_sim_params *p, const x3s_sim_table *t, uint64_t frame,
                     uint32_t chan, uint32_t *dst)
{
    if (p->content == X3S_SIM_PATTERN) {
        gen_pattern(frame, chan, dst);
    } else if (t) {
        gen_spectrum(p, t->lam[chan % 4u], t->s[chan % 4u], frame, chan, dst);
    } else {
        uint32_t lam[X3S_SIM_BINS];
        uint32_t s[X3S_SIM_BINS];
        x3s_sim_table_row(p, chan, lam, s);
        gen_spectrum(p, lam, s, frame, chan, dst);
    }
}

/* Sum of (k mod 256) for k in [0, n). */
static uint64_t pattern_prefix(uint64_t n)
{
    uint64_t r = n % 256u;
    return n / 256u * 32640u + r * (r - 1u) / 2u; /* 32640 = 0 + 1 + ... + 255 */
}

/* Sum of mca[low..=high] (0 when low > high) from the prefix sums pre[i] = sum(mca[0..i)). */
static uint64_t range_sum(const uint64_t *pre, uint32_t low, uint32_t high)
{
    if (high >= X3S_SIM_BINS)
        high = X3S_SIM_BINS - 1u;
    return low > high ? 0u : pre[high + 1u] - pre[low];
}

/* The same sum over the pattern (frame + 3 chan + bin) mod 256, in closed form. */
static uint64_t pattern_sum(uint32_t base, uint32_t low, uint32_t high)
{
    if (high >= X3S_SIM_BINS)
        high = X3S_SIM_BINS - 1u;
    return low > high ? 0u : pattern_prefix((uint64_t)base + high + 1u) - pattern_prefix((uint64_t)base + low);
}

void x3s_sim_gen_scalers(const x3s_sim_params *p, uint64_t frame, uint32_t chan,
                         uint32_t exposure_ticks, const uint32_t win[4], uint32_t good_thres,
                         const uint32_t *mca, uint32_t *sc)
{
    uint64_t total, good, win0, win1;
    uint32_t last = X3S_SIM_BINS - 1u;
    if (p->content == X3S_SIM_PATTERN) {
        uint32_t base = (uint32_t)((frame + 3u * (uint64_t)chan) & 0xFFu);
        total = pattern_sum(base, 0u, last);
        good = pattern_sum(base, good_thres, last);
        win0 = pattern_sum(base, win[0], win[1]);
        win1 = pattern_sum(base, win[2], win[3]);
    } else {
        uint64_t pre[X3S_SIM_BINS + 1];
        pre[0] = 0;
        for (uint32_t b = 0; b < X3S_SIM_BINS; b++)
            pre[b + 1] = pre[b] + mca[b];
        total = pre[X3S_SIM_BINS];
        good = range_sum(pre, good_thres, last);
        win0 = range_sum(pre, win[0], win[1]);
        win1 = range_sum(pre, win[2], win[3]);
    }
    uint64_t pileup = total * p->pileup_ppm / 1000000u;
    uint64_t resets = (uint64_t)exposure_ticks * p->reset_rate_hz / X3S_SIM_CLOCK_HZ;
    sc[0] = exposure_ticks;                      /* Time */
    sc[1] = (uint32_t)(resets * p->reset_ticks); /* ResetTicks */
    sc[2] = (uint32_t)resets;                    /* ResetCount */
    sc[3] = (uint32_t)(total + pileup);          /* AllEvent */
    sc[4] = (uint32_t)good;                      /* AllGood */
    sc[5] = (uint32_t)win0;                      /* InWindow0 */
    sc[6] = (uint32_t)win1;                      /* InWindow1 */
    sc[7] = (uint32_t)pileup;                    /* PileUp */
    sc[8] = exposure_ticks;                      /* TotalTicks */
}
