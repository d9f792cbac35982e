/*
 * x3s_test.c: the shim's C API over the simulated SDK, for valgrind memcheck
 * (sdk-shim/scripts/memcheck.sh).
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: every allocation made by the shim
 * and the simulator goes through the counters below, which prove that nothing is allocated
 * between x3s_arm and x3s_close.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "x3s.h"
#include "x3s_frame_addr.h"
#include "xsp3_api.h"
#include "xsp3_sim.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static unsigned long g_allocs;

void *__wrap_malloc(size_t n)
{
    __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}

static unsigned long allocs(void)
{
    return __atomic_load_n(&g_allocs, __ATOMIC_RELAXED);
}

static int g_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int32_t rc_ = (expr);                                                                      \
        if (rc_ != (want)) {                                                                       \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s)\n", __FILE__, __LINE__,      \
                    #expr, rc_, x3s_strerror(rc_), (want), x3s_strerror(want));                   \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Polls until frames_complete >= n or a failure; bounded by a poll count. */
static int32_t wait_frames(x3s_dev *d, uint64_t n, x3s_progress *p)
{
    for (int i = 0; i < 100000; i++) {
        int32_t rc = x3s_poll(d, p);
        if (rc < 0 || p->frames_complete >= n)
            return rc;
        sleep_us(200);
    }
    return X3S_E_TIMEOUT;
}

enum { NCH = 4, NBINS = 4096, NSC = 9, NTF = 32, NF = 40 };

static uint32_t g_mca[8 * NCH * NBINS];
static uint32_t g_sc[8 * NCH * NSC];
static uint32_t g_emca[NCH * NBINS];
static uint32_t g_esc[NCH * NSC];

static void open_sim(x3s_open_params *p)
{
    x3s_default_open_params(p);
    p->num_tf = NTF;
    p->sim.n_channels = NCH;
    p->sim.seed = 1234;
}

/* A software-triggered acquisition read in batches of 8 across the buffer wrap, checked against
 * the content formula; no allocation between arm and close. */
static void test_software_cycle(uint32_t trigger)
{
    x3s_open_params op;
    open_sim(&op);
    op.sim.ext_trigger_hz = 250.0; /* slow enough for the reader under valgrind */
    x3s_dev *d = NULL;
    unsigned long at_start = allocs();
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    CHECK(allocs() > at_start); /* the counters see the shim's and the simulator's allocations */
    x3s_info info;
    CHECK_RC(x3s_get_info(d, &info), 0);
    CHECK(info.n_channels == NCH && info.n_bins == NBINS && info.ring_frames == NTF);
    CHECK(info.simulated == 1 && info.event_widths[3] == 9);
    CHECK_RC(x3s_set_window(d, -1, 0, 600, 700), 0);
    CHECK_RC(x3s_set_good_threshold(d, 2, 100), 0);
    uint32_t windows[NCH][4];
    uint32_t good[NCH] = {0, 0, 100, 0};
    for (int c = 0; c < NCH; c++) {
        windows[c][0] = 600;
        windows[c][1] = 700;
        windows[c][2] = 0;
        windows[c][3] = NBINS - 1;
    }
    x3s_acq_params a = {NF, 2000, 0, trigger, 0, 0, 0};
    CHECK_RC(x3s_configure(d, &a), 0);

    unsigned long before = allocs();
    CHECK_RC(x3s_arm(d), 0);
    x3s_progress p;
    for (uint64_t first = 0; first < NF; first += 8) {
        if (trigger == X3S_TRIG_SOFTWARE)
            for (int k = 0; k < 8; k++)
                CHECK_RC(x3s_soft_trigger(d), 0);
        CHECK_RC(wait_frames(d, first + 8, &p), 0);
        CHECK_RC(x3s_read_mca(d, first, 8, g_mca, sizeof g_mca / 4), 8);
        CHECK_RC(x3s_read_scalers(d, first, 8, g_sc, sizeof g_sc / 4), 8);
        CHECK_RC(x3s_release(d, first, 8), 8);
        for (uint64_t f = first; f < first + 8; f++) {
            CHECK_RC(x3s_sim_expected_frame(&op.sim, NCH, a.exposure_ticks, &windows[0][0], good, f,
                                            g_emca, NCH * NBINS, g_esc, NCH * NSC),
                     0);
            size_t i = (size_t)(f - first);
            CHECK(memcmp(g_mca + i * NCH * NBINS, g_emca, sizeof g_emca) == 0);
            CHECK(memcmp(g_sc + i * NCH * NSC, g_esc, sizeof g_esc) == 0);
        }
    }
    CHECK_RC(x3s_poll(d, &p), 0);
    CHECK(p.state == X3S_STATE_DONE && p.frames_complete == NF && p.overrun_count == 0);
    /* Errors after arm: reported, and still no allocation. */
    CHECK_RC(x3s_read_mca(d, NF, 1, g_mca, sizeof g_mca / 4), X3S_E_NOT_READY);
    CHECK_RC(x3s_read_mca(d, 0, 1, g_mca, 10), X3S_E_BUFSIZE);
    CHECK_RC(x3s_configure(d, &a), 0); /* DONE: allowed */
    CHECK_RC(x3s_stop(d), 0);
    CHECK_RC(x3s_stop(d), 0);
    char msg[X3S_MAX_MSG];
    CHECK_RC(x3s_last_error(d, msg, sizeof msg), X3S_E_BUFSIZE);
    CHECK(strstr(msg, "buffer has 10") != NULL);
    CHECK(allocs() == before);
    if (allocs() != before)
        fprintf(stderr, "%lu allocations after x3s_arm\n", allocs() - before);
    CHECK_RC(x3s_close(d), 0);
}

/* Software ROIs with a recording of part of the spectrum (bins 600..855 by 4) and of the whole
 * spectrum: the sums of ROIs inside, outside and across the recorded bins, off rebin boundaries,
 * equal the sums over the full spectrum of the content formula; no allocation after arm. */
enum { NROI = 4 };
static uint64_t g_rois[8 * NROI * NCH];

static void test_rois(uint32_t first_bin, uint32_t n_bins, uint32_t rebin)
{
    x3s_open_params op;
    open_sim(&op);
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    /* [roi][chan] {low, high}: inside the recording off its rebin boundaries, below it,
     * straddling its start, per channel (channel 1 without a range). */
    uint32_t ranges[NROI][NCH][2];
    for (int c = 0; c < NCH; c++) {
        ranges[0][c][0] = 621, ranges[0][c][1] = 658;
        ranges[1][c][0] = 100, ranges[1][c][1] = 199;
        ranges[2][c][0] = 590, ranges[2][c][1] = 611;
        ranges[3][c][0] = 3000 + 10 * (uint32_t)c, ranges[3][c][1] = 4095;
    }
    ranges[2][1][0] = 1, ranges[2][1][1] = 0;
    uint32_t bad[NROI][NCH][2];
    memcpy(bad, ranges, sizeof bad);
    bad[3][2][1] = NBINS;
    CHECK_RC(x3s_set_rois(d, NROI, &bad[0][0][0]), X3S_E_ARG);
    CHECK_RC(x3s_set_rois(d, X3S_MAX_ROIS + 1, &ranges[0][0][0]), X3S_E_ARG);
    CHECK_RC(x3s_set_rois(d, NROI, &ranges[0][0][0]), 0);
    CHECK_RC(x3s_set_recording(d, first_bin, n_bins, rebin), 0);
    uint32_t windows[NCH][4], good[NCH] = {0};
    for (int c = 0; c < NCH; c++) {
        windows[c][0] = 0, windows[c][1] = NBINS - 1;
        windows[c][2] = 0, windows[c][3] = NBINS - 1;
    }
    x3s_acq_params a = {8, 2000, 0, X3S_TRIG_SOFTWARE, 0, 0, 0};
    CHECK_RC(x3s_configure(d, &a), 0);
    unsigned long before = allocs();
    CHECK_RC(x3s_arm(d), 0);
    CHECK_RC(x3s_set_rois(d, 0, NULL), X3S_E_STATE);
    for (int k = 0; k < 8; k++)
        CHECK_RC(x3s_soft_trigger(d), 0);
    x3s_progress p;
    CHECK_RC(wait_frames(d, 8, &p), 0);
    size_t out_bins = n_bins / rebin;
    CHECK_RC(x3s_read_mca_rois(d, 0, 8, g_mca, sizeof g_mca / 4, g_rois, 8 * NROI * NCH - 1),
             X3S_E_BUFSIZE);
    CHECK_RC(x3s_read_mca_rois(d, 0, 8, g_mca, sizeof g_mca / 4, g_rois, 8 * NROI * NCH), 8);
    for (uint64_t f = 0; f < 8; f++) {
        CHECK_RC(x3s_sim_expected_frame(&op.sim, NCH, a.exposure_ticks, &windows[0][0], good, f,
                                        g_emca, NCH * NBINS, g_esc, NCH * NSC),
                 0);
        for (int c = 0; c < NCH; c++) {
            const uint32_t *full = g_emca + (size_t)c * NBINS;
            const uint32_t *got = g_mca + (f * NCH + (size_t)c) * out_bins;
            for (size_t b = 0; b < out_bins; b++) {
                uint32_t want = 0;
                for (uint32_t j = 0; j < rebin; j++)
                    want += full[first_bin + b * rebin + j];
                CHECK(got[b] == want);
            }
            for (int r = 0; r < NROI; r++) {
                uint64_t want = 0;
                for (uint32_t b = ranges[r][c][0]; b <= ranges[r][c][1]; b++)
                    want += full[b];
                CHECK(g_rois[(f * NROI + (size_t)r) * NCH + (size_t)c] == want);
            }
        }
    }
    /* Without a ROI buffer: the same spectra, refused only when ROIs need one. */
    CHECK_RC(x3s_read_mca(d, 0, 8, g_mca, sizeof g_mca / 4), 8);
    CHECK_RC(x3s_read_mca_rois(d, 0, 8, g_mca, sizeof g_mca / 4, NULL, 0), X3S_E_ARG);
    CHECK(allocs() == before);
    CHECK_RC(x3s_stop(d), 0);
    CHECK_RC(x3s_close(d), 0);
}

/* Overrun when nothing is released; frames outside the buffer read as X3S_E_OVERRUN. */
static void test_overrun(void)
{
    x3s_open_params op;
    open_sim(&op);
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    x3s_acq_params a = {100, 800, 0, X3S_TRIG_INTERNAL, 0, 0, 0};
    CHECK_RC(x3s_configure(d, &a), 0);
    CHECK_RC(x3s_arm(d), 0);
    CHECK_RC(x3s_arm(d), X3S_E_STATE);
    x3s_progress p;
    CHECK_RC(wait_frames(d, 100, &p), 0);
    CHECK(p.overrun_count == 100 - NTF && p.first_overrun == 0 && (p.err_flags & 0x10000));
    CHECK_RC(x3s_read_mca(d, 67, 1, g_mca, sizeof g_mca / 4), X3S_E_OVERRUN);
    CHECK_RC(x3s_read_scalers(d, 68, 8, g_sc, sizeof g_sc / 4), 8);
    CHECK_RC(x3s_close(d), 0);
}

/* Injected faults, each with its message. */
static void test_faults(void)
{
    x3s_open_params op;
    char msg[X3S_MAX_MSG];
    open_sim(&op);
    op.sim.fail_open = 1;
    x3s_dev *d = (x3s_dev *)&op; /* must be reset to NULL */
    CHECK_RC(x3s_open(&op, &d), -9);
    CHECK(d == NULL);
    CHECK_RC(x3s_last_error(NULL, msg, sizeof msg), -9);
    CHECK(strstr(msg, "device-not-found") != NULL);

    open_sim(&op);
    op.sim.error_at_frame = 7;
    op.sim.error_code = -11;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    x3s_acq_params a = {50, 800, 1, X3S_TRIG_INTERNAL, 0, 0, 0};
    CHECK_RC(x3s_configure(d, &a), 0);
    CHECK_RC(x3s_arm(d), 0);
    x3s_progress p;
    CHECK_RC(wait_frames(d, 50, &p), -11);
    CHECK(p.state == X3S_STATE_FAULT);
    CHECK_RC(x3s_last_error(d, msg, sizeof msg), -11);
    CHECK(strstr(msg, "injected error at frame 7") != NULL);
    /* Truncation keeps the terminator. */
    char tiny[8];
    x3s_last_error(d, tiny, sizeof tiny);
    CHECK(strlen(tiny) == 7);
    CHECK_RC(x3s_read_mca(d, 0, 7, g_mca, sizeof g_mca / 4), 7);
    CHECK_RC(x3s_close(d), 0);

    open_sim(&op);
    op.sim.stall_at_frame = 2;
    op.progress_timeout_ms = 10;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    CHECK_RC(x3s_configure(d, &a), 0);
    CHECK_RC(x3s_arm(d), 0);
    CHECK_RC(wait_frames(d, 50, &p), X3S_E_TIMEOUT);
    CHECK_RC(x3s_last_error(d, msg, sizeof msg), X3S_E_TIMEOUT);
    CHECK(strstr(msg, "stalled") != NULL);
    CHECK_RC(x3s_close(d), 0);

    CHECK_RC(x3s_open(NULL, &d), X3S_E_ARG);
    CHECK_RC(x3s_close(NULL), 0);
}

/* The SDK's frame address (x3s_frame_addr.h) where the buffer depth does not divide 2^32. */
static void test_frame_address(void)
{
    const uint64_t two32 = 1ull << 32;
    CHECK(x3s_sdk_tf(two32 + 7) == 7u);
    CHECK(x3s_sdk_slot(5, 3) == 2);
    /* From frame 2^32 on, the address (low 32 bits) modulo the depth is not the frame modulo the
     * depth: a shim that passed f % depth to one call and f to another would mix up slots. */
    CHECK(x3s_sdk_slot(two32, 3) == 0 && two32 % 3 == 1);
    CHECK(x3s_sdk_slot(two32 - 1, 3) == (two32 - 1) % 3);
    /* A run stops at the end of the buffer and at the wrap of the 32-bit address. */
    CHECK(x3s_sdk_run(0, 10, 3) == 3);
    CHECK(x3s_sdk_run(4, 10, 3) == 2);
    CHECK(x3s_sdk_run(two32 - 1, 10, 3) == 1);
    CHECK(x3s_sdk_run(two32 - 2, 1, 3) == 1);
    CHECK(x3s_sdk_run(two32, 10, 3) == 3);
    CHECK(x3s_sdk_run(two32 - 2, 10, 1u << 20) == 2);
    /* The next frame in a frame's slot: ring frames later, or sooner at the 2^32 wrap. */
    CHECK(x3s_sdk_overwriter(10, 3) == 13);
    CHECK(x3s_sdk_overwriter(two32 - 1, 3) == two32);     /* slot 0, and 2^32 takes slot 0 */
    CHECK(x3s_sdk_overwriter(two32 - 2, 3) == two32 + 2); /* slot 2 */
    CHECK(x3s_sdk_overwriter(two32 - 3, 3) == two32 + 1); /* slot 1 */
    CHECK(x3s_sdk_overwriter(two32 - 4, 1u << 20) == two32 - 4 + (1u << 20));
}

/*
 * Frames on both sides of 2^32 with a 3-frame buffer (3 does not divide 2^32): the simulated SDK
 * starts the run at frame 2^32 - 5 and places frames by the SDK's rule; every read and release
 * must address the same slots, or content is wrong, releases miss and the full-speed detector
 * (which waits for releases) stalls.
 */
static void test_frames_across_2_32(void)
{
    enum { RING = 3, N = 12 };
    const uint64_t base = (1ull << 32) - 5;
    x3s_open_params op;
    open_sim(&op);
    op.num_tf = RING;
    op.sim.full_speed = 1;
    op.sim.frame_base = base;
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    x3s_acq_params a = {0, 800, 0, X3S_TRIG_INTERNAL, 0, 0, 0};
    CHECK_RC(x3s_configure(d, &a), 0);
    CHECK_RC(x3s_arm(d), 0);
    x3s_progress p;
    /* One frame at a time: at the wrap, frame 2^32 - 1 and 2^32 share slot 0, so frame 2^32
     * only completes once 2^32 - 1 is released. */
    for (uint64_t f = base; f < base + N; f++) {
        CHECK_RC(wait_frames(d, f + 1, &p), 0);
        CHECK_RC(x3s_read_mca(d, f, 1, g_mca, sizeof g_mca / 4), 1);
        CHECK_RC(x3s_read_scalers(d, f, 1, g_sc, sizeof g_sc / 4), 1);
        CHECK_RC(x3s_sim_expected_frame(&op.sim, NCH, a.exposure_ticks, NULL, NULL, f, g_emca,
                                        NCH * NBINS, g_esc, NCH * NSC),
                 0);
        CHECK(memcmp(g_mca, g_emca, sizeof g_emca) == 0);
        CHECK(memcmp(g_sc, g_esc, sizeof g_esc) == 0);
        CHECK_RC(x3s_release(d, f, 1), 1);
    }
    CHECK_RC(wait_frames(d, base + N + 1, &p), 0);
    CHECK(p.overrun_count == 0 && p.err_flags == 0);
    CHECK_RC(x3s_stop(d), 0);
    CHECK_RC(x3s_close(d), 0);
}

/* The clock (and sync) the simulated SDK was given by x3s_open, for each kind of box. */
static void check_clock(uint32_t mini, uint32_t mini_plus, int want_clk, int want_flags,
                        int want_sync)
{
    x3s_open_params op;
    open_sim(&op);
    op.sim.mini = mini;
    op.sim.mini_plus = mini_plus;
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    x3s_info info;
    CHECK_RC(x3s_get_info(d, &info), 0);
    CHECK(info.mini_plus == mini_plus && info.generation == (mini ? 2 : 0));
    static x3s_sim_record r;
    CHECK_RC(x3s_sim_get_record(d, &r), 0);
    if (r.cards[0].clk_src != want_clk || r.cards[0].clk_flags != want_flags ||
        r.sync_mode != want_sync) {
        fprintf(stderr, "%s:%d: mini %u mini_plus %u: clock 0x%x flags %d sync %d, want 0x%x %d %d\n",
                __FILE__, __LINE__, mini, mini_plus, r.cards[0].clk_src, r.cards[0].clk_flags,
                r.sync_mode, want_clk, want_flags, want_sync);
        g_failures++;
    }
    CHECK_RC(x3s_close(d), 0);
}

static void test_clocks(void)
{
    check_clock(0, 0, 0x01, 3, -1); /* Xspress3: XTAL, master, no dither */
    check_clock(1, 0, 0x10, 3, -1); /* Mini: CDCM61004 */
    /* Mini Mk2: the midplane's LMK61E2 on all cards, no dither, then midplane sync. */
    check_clock(1, 1, 0x21, 2, 4);
}

/*
 * A 3-card system: card 0 the clock and timing master, the others following it; channels
 * numbered across the cards; every per-channel setting and the trigger inputs reach the SDK, and
 * each channel's scalers follow its own windows and threshold.
 */
static void test_multi_card(void)
{
    enum { CARDS = 3, CH = 7 };
    x3s_open_params op;
    open_sim(&op);
    op.n_cards = CARDS;
    op.sim.n_channels = CH;
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    x3s_info info;
    CHECK_RC(x3s_get_info(d, &info), 0);
    CHECK(info.n_cards == CARDS && info.n_channels == CH);
    CHECK(info.card_channels[0] == 3 && info.card_channels[1] == 2 && info.card_channels[2] == 2);

    static x3s_sim_record r;
    CHECK_RC(x3s_sim_get_record(d, &r), 0);
    CHECK(r.n_cards == CARDS);
    CHECK(r.cards[0].clk_src == 0x01 && r.cards[0].clk_flags == 3); /* XTAL, master */
    for (int c = 1; c < CARDS; c++)
        CHECK(r.cards[c].clk_src == 0x02 && r.cards[c].clk_flags == 2); /* EXT, no dither */

    /* Settings read back at open are the SDK's. */
    x3s_chan_settings cs;
    CHECK_RC(x3s_get_chan_settings(d, 6, &cs), 0);
    CHECK(cs.window_low[0] == 0 && cs.window_high[0] == 4095 && cs.good_threshold == 0);
    CHECK(cs.event_width == cs.event_width_calibrated && cs.event_width == info.event_widths[6]);
    CHECK_RC(x3s_get_chan_settings(d, CH, &cs), X3S_E_ARG);

    uint32_t win[CH][4];
    uint32_t thr[CH];
    for (uint32_t c = 0; c < CH; c++) {
        win[c][0] = 100 * c;
        win[c][1] = 100 * c + 250;
        win[c][2] = 2000 - 50 * c;
        win[c][3] = 3000;
        thr[c] = 10 + 30 * c;
        CHECK_RC(x3s_set_window(d, (int32_t)c, 0, win[c][0], win[c][1]), 0);
        CHECK_RC(x3s_set_window(d, (int32_t)c, 1, win[c][2], win[c][3]), 0);
        CHECK_RC(x3s_set_good_threshold(d, (int32_t)c, thr[c]), 0);
    }
    CHECK_RC(x3s_set_event_width(d, 4, 11), 0);
    CHECK_RC(x3s_set_event_width(d, -1, X3S_MAX_EVENT_WIDTH + 1), X3S_E_ARG);
    CHECK_RC(x3s_set_event_width(d, CH, 5), X3S_E_ARG);
    CHECK_RC(x3s_get_info(d, &info), 0);
    CHECK(info.event_widths[4] == 11 && info.event_widths[3] != 11);
    CHECK_RC(x3s_get_chan_settings(d, 4, &cs), 0);
    CHECK(cs.event_width == 11 && cs.event_width_calibrated != 11);
    CHECK(cs.window_low[1] == win[4][2] && cs.good_threshold == thr[4]);

    x3s_acq_params a = {.n_frames = 4, .exposure_ticks = 8000, .gap_mode = 1,
                        .trigger = X3S_TRIG_SOFTWARE, .debounce_ticks = 80, .invert_f0 = 1,
                        .invert_veto = 1};
    CHECK_RC(x3s_configure(d, &a), 0);
    CHECK_RC(x3s_arm(d), 0);
    CHECK_RC(x3s_set_event_width(d, 0, 5), X3S_E_STATE);
    CHECK_RC(x3s_sim_get_record(d, &r), 0);
    for (uint32_t c = 0; c < CH; c++) {
        CHECK(memcmp(r.windows[c], win[c], sizeof win[c]) == 0);
        CHECK(r.good_thres[c] == thr[c]);
    }
    CHECK(r.timing_calls == 1 && r.t_src == 1 && r.inv_f0 == 1 && r.inv_veto == 1 &&
          r.debounce == 80);
    /* Card 0: the ITFG, inverted F0 and veto, debounce 80; the others: card 0's veto. */
    CHECK(r.cards[0].time_a == (1u | (1u << 3) | (1u << 4) | (80u << 16)));
    CHECK(r.cards[0].itfg_trig_mode == 1 && r.cards[0].itfg_gap_mode == 1 &&
          r.cards[0].itfg_col_time == 8000 && r.cards[0].itfg_frames == 4);
    for (int c = 1; c < CARDS; c++) {
        CHECK(r.cards[c].time_a == (4u | (80u << 16)));
        CHECK(r.cards[c].run == 1 && r.cards[c].start_seq < r.cards[0].start_seq);
    }
    CHECK(r.cards[0].run == 2); /* armed for software triggers */

    x3s_progress p;
    for (uint64_t f = 0; f < 4; f++) {
        CHECK_RC(x3s_soft_trigger(d), 0);
        CHECK_RC(wait_frames(d, f + 1, &p), 0);
        CHECK_RC(x3s_read_scalers(d, f, 1, g_sc, CH * NSC), 1);
        CHECK_RC(x3s_read_mca(d, f, 1, g_mca, CH * NBINS), 1);
        for (uint32_t c = 0; c < CH; c++) {
            const uint32_t *m = g_mca + (size_t)c * NBINS;
            const uint32_t *sc = g_sc + (size_t)c * NSC;
            uint64_t w0 = 0, w1 = 0, good = 0;
            for (uint32_t b = 0; b < NBINS; b++) {
                w0 += b >= win[c][0] && b <= win[c][1] ? m[b] : 0;
                w1 += b >= win[c][2] && b <= win[c][3] ? m[b] : 0;
                good += b >= thr[c] ? m[b] : 0;
            }
            CHECK(sc[5] == w0 && sc[6] == w1 && sc[4] == good);
        }
        CHECK_RC(x3s_release(d, f, 1), 1);
    }
    CHECK_RC(x3s_stop(d), 0);
    CHECK_RC(x3s_close(d), 0);
}

/* The simulator refuses a multi-card set-up that does not follow card 0. */
static void test_multi_card_refusals(void)
{
    x3s_open_params op;
    open_sim(&op);
    op.n_cards = 2;
    op.sim.n_channels = 2;
    x3s_dev *d = NULL;
    CHECK_RC(x3s_open(&op, &d), 0);
    if (!d)
        return;
    int path = -1;
    /* The device's path is private; it is the simulator's one open path. */
    static x3s_sim_record r;
    for (int p = 0; p < 64 && path < 0; p++)
        if (xsp3_sim_get_record(p, &r) == 0)
            path = p;
    CHECK(path >= 0);
    CHECK_RC(xsp3_clocks_setup(path, 1, 0x01, 3, 0), -6); /* a second master */
    CHECK_RC(xsp3_clocks_setup(path, -1, 0x01, 3, 0), -6);
    CHECK(strstr(xsp3_get_error_message(), "card 1") != NULL);
    Xsp3Timing t;
    memset(&t, 0, sizeof t);
    t.t_src = 1;
    CHECK_RC(xsp3_set_timing(path, &t), 0);
    CHECK_RC(xsp3_itfg_setup(path, 0, 4, 800, 0, 0), 0);
    CHECK_RC(xsp3_histogram_start(path, 0), -1); /* card 1 not started */
    CHECK(strstr(xsp3_get_error_message(), "card 1 is not running") != NULL);
    CHECK_RC(xsp3_histogram_start(path, 1), 0);
    CHECK_RC(xsp3_histogram_start(path, 0), 0);
    CHECK_RC(xsp3_histogram_stop(path, -1), 0);
    CHECK_RC(x3s_close(d), 0);
    op.n_cards = 3; /* 2 channels cannot be shared by 3 cards */
    CHECK_RC(x3s_open(&op, &d), -6);
    op.n_cards = X3S_MAX_CARDS + 1;
    CHECK_RC(x3s_open(&op, &d), X3S_E_ARG);
}

int main(void)
{
    CHECK(x3s_abi_version() == ((X3S_ABI_MAJOR << 16) | X3S_ABI_MINOR));
    CHECK(strcmp(x3s_strerror(-6), "XSP3_RANGE_CHECK") == 0);
    CHECK(strcmp(x3s_strerror(X3S_E_OVERRUN), "X3S_E_OVERRUN") == 0);
    test_software_cycle(X3S_TRIG_SOFTWARE);
    test_software_cycle(X3S_TRIG_EXTERNAL);
    test_rois(600, 256, 4);
    test_rois(0, NBINS, 1);
    test_overrun();
    test_faults();
    test_frame_address();
    test_frames_across_2_32();
    test_clocks();
    test_multi_card();
    test_multi_card_refusals();
    if (g_failures) {
        fprintf(stderr, "x3s_test: %d checks failed\n", g_failures);
        return 1;
    }
    printf("x3s_test: all checks passed\n");
    return 0;
}
