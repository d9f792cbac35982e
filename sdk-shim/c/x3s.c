/*
 * x3s.c: the shim. Written only in terms of xsp3_* calls, so the same code runs over the
 * simulated SDK (xsp3_sim.c) and over the real libxspress3.
 *
 * Build switches (set by build.rs):
 *   X3S_USE_VENDOR_SDK      include the vendor's <xspress3.h> instead of our xsp3_api.h
 *   X3S_WITH_SIM            the simulated SDK is linked in (x3s_open passes it its parameters)
 *   X3S_XSP3_CLOSE_ARGS     1 or 2: the number of parameters of the xsp3_close prototype in the
 *                           header at hand (build.rs finds it by trial compilation)
 *
 * Locking: the SDK's error-message buffer is one static global that is not thread-safe, so every
 * SDK call, and the copy of its message when it fails, happens under g_sdk_mu. The message is
 * copied into the device (under d->err_mu) at failure time.
 *
 * Allocation: x3s_open allocates the device; x3s_arm and everything after it allocate nothing.
 */
/*
 * _DEFAULT_SOURCE as well as POSIX 2008: the vendor's headers use BSD types (struct timeval as a
 * complete type) that glibc exposes only with _DEFAULT_SOURCE.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include "x3s.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef X3S_USE_VENDOR_SDK
#include <xspress3.h>
#ifndef X3S_XSP3_CLOSE_ARGS
#error "X3S_XSP3_CLOSE_ARGS must be set (build.rs detects it from the header)"
#endif
#else
#include "xsp3_api.h"
#endif

#include "x3s_frame_addr.h"

/*
 * xsp3_is_xsp3m_plus (second-generation Mini, "Mk2") is referenced weakly: SDKs before 2024 do not
 * declare it, and the 2024-05 SDK declares it in its header while its libxspress3.so does not
 * define it. A weak reference links against all of them; at run time a library without the call
 * (which also cannot drive a Mk2) reads as "not Mk2". This declaration matches the SDK's.
 */
extern int xsp3_is_xsp3m_plus(int path) __attribute__((weak));

#ifdef X3S_USE_VENDOR_SDK
#include <math.h>
/*
 * libxspress3 uses libimg_mod (munlink, _os_link, ...) and libm (exp, sqrt) without recording
 * them as needed libraries. Linkers that apply --as-needed only to references from the program's
 * own objects (rust-lld does) would drop both, and the program would not load. x3s_open reads this
 * table, so our objects reference one symbol of each (munlink is declared by the SDK's datamod.h).
 */
static int (*volatile const x3s_sdk_needs_img_mod)(void *) = munlink;
static double (*volatile const x3s_sdk_needs_libm)(double) = exp;
#endif

#ifdef X3S_WITH_SIM
#include "xsp3_sim.h"
#endif

#include "x3s_sim_content.h"

/* Hardware register facts (reference section 2.2), private to the shim. */
#define X3S_GTIMA_SRC_INTERNAL 1
#define X3S_GTIMA_SRC_TTL_VETO_ONLY 4
#define X3S_ITFG_BURST 0
#define X3S_ITFG_SOFTWARE 1
#define X3S_ITFG_HARDWARE 2
#define X3S_ITFG_SOFTWARE_ONLY_FIRST 5
#define X3S_ITFG_HARDWARE_ONLY_FIRST 6
#define X3S_GEN_MINI 2
#define X3S_GEN_4 3
#define X3S_CLK_XTAL 1
#define X3S_CLK_EXT 2 /* XSP3_CLK_SRC_EXT: the clock LEMO, driven by the master card */
#define X3S_CLK_CDCM61004 0x10
#define X3S_CLK_LMK61E2 0x11
#define X3S_CLK_MIDPLN_LMK61E2 0x21 /* XSP4_CLK_SRC_MIDPLN_LMK61E2: the midplane's clock */
#define X3S_CLK_MASTER_NO_DITHER 3 /* MASTER (1 << 0) | NO_DITHER (1 << 1) */
#define X3S_CLK_NO_DITHER 2        /* NO_DITHER (1 << 1) */
#define X3S_SYNC_MIDPLANE 4        /* XSP3_SYNC_MIDPLANE; XSP3_SYNC_MODE(x) is x & 0xFF */
#define X3S_XSP3_UNLINK_ALL 2      /* Xsp3UnlinkAll */
#define X3S_RUN_SCALERS_HIST_CIRC (0x4 | 0x8 | 0x100)
#define X3S_FLAGS_OVERRUN (0x10000u | 0x1000000u) /* CircBuffOverRun(Scalars) */
#define X3S_FLAGS_BENIGN (0x1u | 0x2u)            /* Playback, Scope: modes, not errors */
#define X3S_MAX_BINS 4096

struct x3s_dev {
    int path;
    uint32_t n_cards;
    uint32_t progress_timeout_ms;
    x3s_info info;
    x3s_chan_settings chans[X3S_MAX_CHANNELS];
    /* What x3s_read_mca returns (x3s_set_recording): detector bins [rec_first, rec_first +
     * rec_bins), summed by rec_rebin. */
    uint32_t rec_first;
    uint32_t rec_bins;
    uint32_t rec_rebin;
    /* Software ROIs (x3s_set_rois): per ROI and channel detector bins [low, high], none where
     * low > high. */
    uint32_t n_rois;
    uint32_t roi_ranges[X3S_MAX_ROIS][X3S_MAX_CHANNELS][2];
    /* What is read from the SDK: detector bins [span_first, span_first + span_bins), the
     * recorded bins and every ROI; through `scratch` (scratch_frames frames) unless that is
     * exactly the recording without rebinning. */
    uint32_t span_first;
    uint32_t span_bins;
    uint32_t *scratch;
    uint32_t scratch_frames;

    int configured;
    x3s_acq_params acq;
    uint32_t state;
    int sdk_stopped;
    int32_t fault_code;
    uint64_t frames_complete;
    uint64_t furthest;
    uint64_t overrun_count;
    int64_t first_overrun;
    uint32_t err_flags;
    uint64_t stall_since_ns;
    uint64_t stall_value;
    int32_t pending_fault;         /* a progress query inside a read failed; x3s_poll reports it */
    char fault_msg[X3S_MAX_MSG];   /* the text of the fault, kept for every later x3s_poll */

    pthread_mutex_t err_mu;
    int32_t err_code;
    char err_msg[X3S_MAX_MSG];
};

static pthread_mutex_t g_sdk_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int32_t t_open_code;
static _Thread_local char t_open_msg[X3S_MAX_MSG];

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Records an error of d (or of this thread's x3s_open when d is NULL). Returns code. */
static int32_t set_error(x3s_dev *d, int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int32_t set_error(x3s_dev *d, int32_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (d) {
        pthread_mutex_lock(&d->err_mu);
        d->err_code = code;
        vsnprintf(d->err_msg, sizeof d->err_msg, fmt, ap);
        pthread_mutex_unlock(&d->err_mu);
    } else {
        t_open_code = code;
        vsnprintf(t_open_msg, sizeof t_open_msg, fmt, ap);
    }
    va_end(ap);
    return code;
}

/* Called with g_sdk_mu held, right after the failing call: the SDK's text is still current. */
static void capture_sdk_error(x3s_dev *d, int64_t rc, const char *what)
{
    const char *m = xsp3_get_error_message();
    set_error(d, (int32_t)rc, "%s failed (%s): %s", what, x3s_strerror((int32_t)rc),
              m && m[0] ? m : "(no message from the SDK)");
}

/* One SDK call under the lock; a failure's message is captured before the lock is released. */
#define SDK(d, rc, what, call)                                                                     \
    do {                                                                                           \
        pthread_mutex_lock(&g_sdk_mu);                                                             \
        (rc) = (call);                                                                             \
        if ((rc) < 0)                                                                              \
            capture_sdk_error((d), (rc), (what));                                                  \
        pthread_mutex_unlock(&g_sdk_mu);                                                           \
    } while (0)

/*
 * The SDK's progress. A failure is a fault of the acquisition whichever call saw it: its text is
 * kept in d->fault_msg and x3s_poll reports it (pending_fault) even if a read saw it first.
 */
static int64_t sdk_progress(x3s_dev *d, uint32_t *flags, int64_t *furthest)
{
    Xsp3ErrFlag f = (Xsp3ErrFlag)0;
    int64_t rc;
    int64_t far = 0;
    pthread_mutex_lock(&g_sdk_mu);
    rc = xsp3_scaler_check_progress_details(d->path, &f, 1, &far);
    if (rc < 0) {
        capture_sdk_error(d, rc, "xsp3_scaler_check_progress_details");
        pthread_mutex_lock(&d->err_mu);
        memcpy(d->fault_msg, d->err_msg, sizeof d->fault_msg);
        pthread_mutex_unlock(&d->err_mu);
        d->pending_fault = (int32_t)rc;
    }
    pthread_mutex_unlock(&g_sdk_mu);
    if (flags)
        *flags = (uint32_t)f;
    if (furthest)
        *furthest = far < rc ? rc : far;
    return rc;
}

/*
 * xsp3_close always receives Xsp3UnlinkAll as its second argument, whatever the header declares.
 *
 * Headers and libraries disagree: the 2023-01 static library and the 2024-05 and later shared
 * libraries read a second (unlink) argument, while the 2023-01, 2024-07 and 2025 headers declare
 * xsp3_close(int path); older libraries take one argument. Calling in the header's one-argument
 * form would leave the library reading whatever the %esi register happens to hold, so whether the
 * SDK's shared-memory modules are unlinked on close would be arbitrary. So with a one-argument
 * prototype the shim calls through a two-argument function type. In the x86-64 System V ABI (the
 * only ABI the SDK ships for) the first integer arguments travel in registers (%edi, %esi), the
 * caller owns the call's set-up and clean-up and %esi is a scratch register: a one-argument
 * library never reads %esi, so the extra argument is invisible to it, and a two-argument library
 * gets a defined value. (ISO C leaves a call through a mismatched function type undefined; this
 * relies on the ABI, hence the architecture check.)
 */
static int sdk_close(int path)
{
    int rc;
    pthread_mutex_lock(&g_sdk_mu);
#if X3S_XSP3_CLOSE_ARGS == 1
#if defined(__x86_64__)
    {
        typedef int (*close2_fn)(int, int);
        close2_fn close2 = (close2_fn)(void (*)(void))xsp3_close;
        rc = close2(path, X3S_XSP3_UNLINK_ALL);
    }
#else
    rc = xsp3_close(path);
#endif
#else
    rc = xsp3_close(path, Xsp3UnlinkAll);
#endif
    pthread_mutex_unlock(&g_sdk_mu);
    return rc;
}

uint32_t x3s_abi_version(void)
{
    return ((uint32_t)X3S_ABI_MAJOR << 16) | X3S_ABI_MINOR;
}

void x3s_sim_default_params(x3s_sim_params *p)
{
    if (p)
        x3s_sim_params_defaults(p);
}

void x3s_default_open_params(x3s_open_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->n_cards = 1;
    p->n_channels = -1;
    p->num_tf = 16384;
    p->debug = -1;
    x3s_sim_default_params(&p->sim);
}

const char *x3s_strerror(int32_t code)
{
    switch (code) {
    case 0: return "XSP3_OK";
    case -1: return "XSP3_ERROR";
    case -2: return "XSP3_INVALID_PATH";
    case -3: return "XSP3_ILLEGAL_CARD";
    case -4: return "XSP3_ILLEGAL_SUBPATH";
    case -5: return "XSP3_INVALID_DMA_STREAM";
    case -6: return "XSP3_RANGE_CHECK";
    case -7: return "XSP3_INVALID_SCOPE_MOD";
    case -8: return "XSP3_OUT_OF_MEMORY";
    case -9: return "XSP3_ERR_DEV_NOT_FOUND";
    case -10: return "XSP3_CANNOT_OPEN_FILE";
    case -11: return "XSP3_FILE_READ_FAILED";
    case -12: return "XSP3_FILE_WRITE_FAILED";
    case -13: return "XSP3_FILE_RENAME_FAILED";
    case -14: return "XSP3_LOG_FILE_MISSING";
    case -20: return "XSP3_WOULD_BLOCK";
    case X3S_E_STATE: return "X3S_E_STATE";
    case X3S_E_ARG: return "X3S_E_ARG";
    case X3S_E_BUFSIZE: return "X3S_E_BUFSIZE";
    case X3S_E_NOT_READY: return "X3S_E_NOT_READY";
    case X3S_E_OVERRUN: return "X3S_E_OVERRUN";
    case X3S_E_TIMEOUT: return "X3S_E_TIMEOUT";
    case X3S_E_BACKEND: return "X3S_E_BACKEND";
    default: return code > 0 ? "X3S_OK" : "X3S_E_UNKNOWN";
    }
}

int32_t x3s_last_error(x3s_dev *d, char *buf, size_t len)
{
    int32_t code;
    if (!d) {
        code = t_open_code;
        if (buf && len)
            snprintf(buf, len, "%s", t_open_msg);
        return code;
    }
    pthread_mutex_lock(&d->err_mu);
    code = d->err_code;
    if (buf && len)
        snprintf(buf, len, "%s", d->err_msg);
    pthread_mutex_unlock(&d->err_mu);
    return code;
}

/* ---------------------------------------------------------------------------------------------
 * Open and close.
 */

static int32_t open_fail(x3s_dev *d, int path, int64_t rc)
{
    /* The message is already in the device; move it to the thread's open error. */
    if (d) {
        set_error(NULL, d->err_code, "%s", d->err_msg);
        pthread_mutex_destroy(&d->err_mu);
        free(d);
    }
    if (path >= 0)
        sdk_close(path);
    return (int32_t)rc;
}

int32_t x3s_open(const x3s_open_params *p, x3s_dev **out)
{
    if (out)
        *out = NULL;
    if (!p || !out)
        return set_error(NULL, X3S_E_ARG, "x3s_open: params and out must not be NULL");
    if (p->n_cards < 1 || p->n_cards > X3S_MAX_CARDS || p->num_tf < 1 || p->n_channels == 0 || p->n_channels < -1)
        return set_error(NULL, X3S_E_ARG,
                         "x3s_open: %" PRId32 " cards, %" PRId32 " channels, %" PRId32
                         " frames: need 1..%d cards, >= 1 frame and channels -1 or >= 1",
                         p->n_cards, p->n_channels, p->num_tf, X3S_MAX_CARDS);
    x3s_dev *d = calloc(1, sizeof *d);
    if (!d)
        return set_error(NULL, XSP3_OUT_OF_MEMORY, "x3s_open: out of memory");
    pthread_mutex_init(&d->err_mu, NULL);
    d->path = -1;
    d->n_cards = (uint32_t)p->n_cards;
    d->progress_timeout_ms = p->progress_timeout_ms;
    d->first_overrun = -1;
    d->state = X3S_STATE_IDLE;
    strcpy(d->err_msg, "no error");

    int64_t rc;
#ifdef X3S_USE_VENDOR_SDK
    if (!x3s_sdk_needs_img_mod || !x3s_sdk_needs_libm)
        return open_fail(d, -1, set_error(d, X3S_E_BACKEND, "x3s_open: libimg_mod or libm missing"));
#endif
    pthread_mutex_lock(&g_sdk_mu);
#ifdef X3S_WITH_SIM
    xsp3_sim_set_params(&p->sim);
    d->info.simulated = 1;
#endif
    rc = xsp3_config(p->n_cards, p->num_tf, (char *)p->base_ip, -1, NULL, p->n_channels, 1, NULL,
                     p->debug, 0);
    if (rc < 0)
        capture_sdk_error(d, rc, "xsp3_config");
    pthread_mutex_unlock(&g_sdk_mu);
    if (rc < 0)
        return open_fail(d, -1, rc);
    d->path = (int)rc;

    SDK(d, rc, "xsp3_get_generation", xsp3_get_generation(d->path, 0));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    d->info.generation = (int32_t)rc;
    if (rc == X3S_GEN_MINI && xsp3_is_xsp3m_plus) {
        SDK(d, rc, "xsp3_is_xsp3m_plus", xsp3_is_xsp3m_plus(d->path));
        if (rc < 0)
            return open_fail(d, d->path, rc);
        d->info.mini_plus = rc == 1;
    }
    if (d->info.mini_plus) {
        /*
         * Second-generation Mini (Mk2): its clock comes from the midplane, and the boxes sync over
         * the midplane, as Quantum Detectors' Odin (LibXspressWrapper::setup_clocks) does: all
         * cards, MIDPLN_LMK61E2, no dither, then sync mode MIDPLANE without global reset.
         */
        SDK(d, rc, "xsp3_clocks_setup",
            xsp3_clocks_setup(d->path, -1, X3S_CLK_MIDPLN_LMK61E2, X3S_CLK_NO_DITHER, 0));
        if (rc < 0)
            return open_fail(d, d->path, rc);
        SDK(d, rc, "xsp3_set_sync_mode", xsp3_set_sync_mode(d->path, X3S_SYNC_MIDPLANE, 0, 0));
        if (rc < 0)
            return open_fail(d, d->path, rc);
    } else {
        /*
         * Card 0 is the clock master (MASTER: its clock drives the other cards). On an Xspress3
         * it runs from its crystal and the other cards take its clock from the clock LEMO
         * (XSP3_CLK_SRC_EXT, "slave boards" in the manual); Mini and Xspress4 cards use their ADC
         * board's clock chip, only card 0 flagged master. No dither throughout, as EPICS does.
         */
        for (uint32_t card = 0; card < d->n_cards; card++) {
            int master = card == 0;
            int clk = d->info.generation == X3S_GEN_MINI ? X3S_CLK_CDCM61004
                      : d->info.generation == X3S_GEN_4  ? X3S_CLK_LMK61E2
                      : master                           ? X3S_CLK_XTAL
                                                         : X3S_CLK_EXT;
            SDK(d, rc, "xsp3_clocks_setup",
                xsp3_clocks_setup(d->path, (int)card, clk,
                                  master ? X3S_CLK_MASTER_NO_DITHER : X3S_CLK_NO_DITHER, 0));
            if (rc < 0)
                return open_fail(d, d->path, rc);
        }
    }
    if (p->settings_dir) {
        SDK(d, rc, "xsp3_restore_settings",
            xsp3_restore_settings(d->path, (char *)p->settings_dir, 0));
        if (rc < 0)
            return open_fail(d, d->path, rc);
    }
    SDK(d, rc, "xsp3_format_run", xsp3_format_run(d->path, -1, 0, 0, 0, 0, 0, 12));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    if (rc < 1)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND, "xsp3_format_run: no frame fits the buffer"));
    d->info.ring_frames = (uint64_t)rc;
    SDK(d, rc, "xsp3_set_run_flags", xsp3_set_run_flags(d->path, X3S_RUN_SCALERS_HIST_CIRC));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    SDK(d, rc, "xsp3_get_num_chan", xsp3_get_num_chan(d->path));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    if (rc < 1 || rc > X3S_MAX_CHANNELS)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND, "xsp3_get_num_chan: %" PRId64 " channels",
                                   rc));
    d->info.n_channels = (uint32_t)rc;
    SDK(d, rc, "xsp3_get_num_cards", xsp3_get_num_cards(d->path));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    if (rc != (int64_t)d->n_cards)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND,
                                   "xsp3_get_num_cards: %" PRId64 " cards, %" PRIu32 " configured",
                                   rc, d->n_cards));
    d->info.n_cards = d->n_cards;
    uint32_t card_sum = 0;
    for (uint32_t card = 0; card < d->n_cards; card++) {
        SDK(d, rc, "xsp3_get_num_chan_used", xsp3_get_num_chan_used(d->path, (int)card));
        if (rc < 0)
            return open_fail(d, d->path, rc);
        d->info.card_channels[card] = (uint32_t)rc;
        card_sum += (uint32_t)rc;
    }
    if (card_sum != d->info.n_channels)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND,
                                   "xsp3_get_num_chan_used: the cards' channels add up to %" PRIu32
                                   ", but the system has %" PRIu32,
                                   card_sum, d->info.n_channels));
    SDK(d, rc, "xsp3_get_bins_per_mca", xsp3_get_bins_per_mca(d->path));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    if (rc < 1 || rc > X3S_MAX_BINS)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND, "xsp3_get_bins_per_mca: %" PRId64 " bins",
                                   rc));
    d->info.n_bins = (uint32_t)rc;
    d->rec_first = 0;
    d->rec_bins = d->info.n_bins;
    d->rec_rebin = 1;
    d->span_first = 0;
    d->span_bins = d->info.n_bins;
    d->info.n_scalers = X3S_N_SCALERS;
    SDK(d, rc, "xsp3_get_revision", xsp3_get_revision(d->path));
    if (rc < 0)
        return open_fail(d, d->path, rc);
    d->info.revision = (int32_t)rc;

    double period;
    pthread_mutex_lock(&g_sdk_mu);
    period = xsp3_get_clock_period(d->path, 0);
    pthread_mutex_unlock(&g_sdk_mu);
    if (!(period > 0.0) || period > 1e-3)
        return open_fail(d, d->path,
                         set_error(d, X3S_E_BACKEND, "xsp3_get_clock_period: %g s", period));
    d->info.clock_hz = 1.0 / period;

    for (uint32_t c = 0; c < d->info.n_channels; c++) {
        Xspress3_TriggerB tb;
        memset(&tb, 0, sizeof tb);
        SDK(d, rc, "xsp3_get_trigger_b", xsp3_get_trigger_b(d->path, (int)c, &tb));
        if (rc < 0)
            return open_fail(d, d->path, rc);
        /* With variable-width CFD the effective width is event_time - 3 (as EPICS does). */
        int w = tb.enb_variable_width ? tb.event_time - 3 : tb.event_time;
        x3s_chan_settings *cs = &d->chans[c];
        cs->event_width_calibrated = w > 0 ? (uint32_t)w : 0u;
        cs->event_width = cs->event_width_calibrated;
        d->info.event_widths[c] = cs->event_width;
        /* The windows and threshold the settings directory (or the SDK's defaults) left. */
        for (int win = 0; win < 2; win++) {
            SDK(d, rc, "xsp3_get_window",
                xsp3_get_window(d->path, (int)c, win, &cs->window_low[win],
                                &cs->window_high[win]));
            if (rc < 0)
                return open_fail(d, d->path, rc);
        }
        SDK(d, rc, "xsp3_get_good_thres", xsp3_get_good_thres(d->path, (int)c, &cs->good_threshold));
        if (rc < 0)
            return open_fail(d, d->path, rc);
    }
    *out = d;
    return X3S_OK;
}

int32_t x3s_close(x3s_dev *d)
{
    if (!d)
        return X3S_OK;
    int64_t rc;
    SDK(d, rc, "xsp3_histogram_stop", xsp3_histogram_stop(d->path, -1));
    (void)rc; /* closing anyway */
    int crc = sdk_close(d->path);
    pthread_mutex_destroy(&d->err_mu);
    free(d->scratch);
    free(d);
    return crc < 0 ? crc : X3S_OK;
}

int32_t x3s_get_info(x3s_dev *d, x3s_info *out)
{
    if (!d || !out)
        return set_error(d, X3S_E_ARG, "x3s_get_info: NULL argument");
    *out = d->info;
    return X3S_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Settings.
 */

static int busy(const x3s_dev *d)
{
    return d->state == X3S_STATE_ARMED || d->state == X3S_STATE_RUNNING;
}

int32_t x3s_set_window(x3s_dev *d, int32_t chan, uint32_t win, uint32_t low, uint32_t high)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE, "x3s_set_window: not allowed while armed or running");
    if (chan < -1 || chan >= (int32_t)d->info.n_channels || win > 1 || low > high ||
        high >= d->info.n_bins)
        return set_error(d, X3S_E_ARG,
                         "x3s_set_window: channel %" PRId32 " window %" PRIu32 " [%" PRIu32
                         ", %" PRIu32 "]: need channel -1..%" PRIu32
                         ", window 0 or 1, low <= high < %" PRIu32,
                         chan, win, low, high, d->info.n_channels - 1, d->info.n_bins);
    uint32_t c0 = chan < 0 ? 0 : (uint32_t)chan;
    uint32_t c1 = chan < 0 ? d->info.n_channels : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {
        int64_t rc;
        SDK(d, rc, "xsp3_set_window", xsp3_set_window(d->path, (int)c, (int)win, (int)low, (int)high));
        if (rc < 0)
            return (int32_t)rc;
        d->chans[c].window_low[win] = low;
        d->chans[c].window_high[win] = high;
    }
    return X3S_OK;
}

int32_t x3s_set_good_threshold(x3s_dev *d, int32_t chan, uint32_t thr)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE,
                         "x3s_set_good_threshold: not allowed while armed or running");
    if (chan < -1 || chan >= (int32_t)d->info.n_channels || thr >= d->info.n_bins)
        return set_error(d, X3S_E_ARG,
                         "x3s_set_good_threshold: channel %" PRId32 " threshold %" PRIu32
                         ": need channel -1..%" PRIu32 " and threshold < %" PRIu32,
                         chan, thr, d->info.n_channels - 1, d->info.n_bins);
    uint32_t c0 = chan < 0 ? 0 : (uint32_t)chan;
    uint32_t c1 = chan < 0 ? d->info.n_channels : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {
        int64_t rc;
        SDK(d, rc, "xsp3_set_good_thres", xsp3_set_good_thres(d->path, (int)c, thr));
        if (rc < 0)
            return (int32_t)rc;
        d->chans[c].good_threshold = thr;
    }
    return X3S_OK;
}

int32_t x3s_set_event_width(x3s_dev *d, int32_t chan, uint32_t ticks)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE, "x3s_set_event_width: not allowed while armed or running");
    if (chan < -1 || chan >= (int32_t)d->info.n_channels || ticks > X3S_MAX_EVENT_WIDTH)
        return set_error(d, X3S_E_ARG,
                         "x3s_set_event_width: channel %" PRId32 " width %" PRIu32
                         " ticks: need channel -1..%" PRIu32 " and width <= %d",
                         chan, ticks, d->info.n_channels - 1, X3S_MAX_EVENT_WIDTH);
    uint32_t c0 = chan < 0 ? 0 : (uint32_t)chan;
    uint32_t c1 = chan < 0 ? d->info.n_channels : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {
        d->chans[c].event_width = ticks;
        d->info.event_widths[c] = ticks;
    }
    return X3S_OK;
}

/* The read buffer of a rebinned recording or of ROIs beyond it: about 4 MiB, one frame at
 * least. */
#define X3S_SCRATCH_WORDS (1u << 20)
/* Frames read straight into the caller's buffer at a time when ROIs are summed from it: about
 * 256 KiB, so the sums read spectra still in cache. */
#define X3S_ROI_CHUNK_WORDS (1u << 16)

/* Whether the SDK reads go through the scratch buffer: the caller's buffer holds only the
 * recorded bins, unsummed. */
static int reads_via_scratch(const x3s_dev *d)
{
    return d->rec_rebin > 1 || d->span_first != d->rec_first || d->span_bins != d->rec_bins;
}

/* Sets the read span to the recording and the ROIs (rec_* and roi_* set) and the scratch buffer
 * it needs. On failure the scratch buffer is gone, and reads that need it are refused until a
 * later call succeeds. */
static int32_t plan_reads(x3s_dev *d, const char *fn)
{
    uint32_t lo = d->rec_first, end = d->rec_first + d->rec_bins;
    for (uint32_t r = 0; r < d->n_rois; r++)
        for (uint32_t c = 0; c < d->info.n_channels; c++) {
            const uint32_t *range = d->roi_ranges[r][c];
            if (range[0] > range[1])
                continue;
            if (range[0] < lo)
                lo = range[0];
            if (range[1] + 1 > end)
                end = range[1] + 1;
        }
    free(d->scratch);
    d->scratch = NULL;
    d->scratch_frames = 0;
    d->span_first = lo;
    d->span_bins = end - lo;
    if (reads_via_scratch(d)) {
        size_t frame_words = (size_t)d->info.n_channels * d->span_bins;
        size_t frames = X3S_SCRATCH_WORDS / frame_words;
        d->scratch_frames = frames < 1 ? 1 : (uint32_t)frames;
        d->scratch = calloc((size_t)d->scratch_frames * frame_words, sizeof *d->scratch);
        if (!d->scratch)
            return set_error(d, XSP3_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    return X3S_OK;
}

int32_t x3s_set_recording(x3s_dev *d, uint32_t first_bin, uint32_t n_bins, uint32_t rebin)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE, "x3s_set_recording: not allowed while armed or running");
    if (rebin < 1 || n_bins < rebin || n_bins % rebin != 0 || first_bin >= d->info.n_bins ||
        n_bins > d->info.n_bins - first_bin)
        return set_error(d, X3S_E_ARG,
                         "x3s_set_recording: %" PRIu32 " bins from bin %" PRIu32
                         " summed by %" PRIu32 ": need bins within 0..%" PRIu32
                         " and a bin count that is a multiple of rebin >= 1",
                         n_bins, first_bin, rebin, d->info.n_bins - 1);
    d->rec_first = first_bin;
    d->rec_bins = n_bins;
    d->rec_rebin = rebin;
    return plan_reads(d, "x3s_set_recording");
}

int32_t x3s_set_rois(x3s_dev *d, uint32_t n_rois, const uint32_t *ranges)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE, "x3s_set_rois: not allowed while armed or running");
    if (n_rois > X3S_MAX_ROIS || (n_rois > 0 && !ranges))
        return set_error(d, X3S_E_ARG,
                         "x3s_set_rois: %" PRIu32 " ROIs: need at most %d and their ranges",
                         n_rois, X3S_MAX_ROIS);
    uint32_t nch = d->info.n_channels;
    for (uint32_t i = 0; i < n_rois * nch; i++) {
        uint32_t lo = ranges[2 * i], hi = ranges[2 * i + 1];
        if (lo <= hi && hi >= d->info.n_bins)
            return set_error(d, X3S_E_ARG,
                             "x3s_set_rois: ROI %" PRIu32 " channel %" PRIu32 ": bins %" PRIu32
                             "..%" PRIu32 " beyond bin %" PRIu32,
                             i / nch, i % nch, lo, hi, d->info.n_bins - 1);
    }
    d->n_rois = n_rois;
    for (uint32_t i = 0; i < n_rois * nch; i++) {
        d->roi_ranges[i / nch][i % nch][0] = ranges[2 * i];
        d->roi_ranges[i / nch][i % nch][1] = ranges[2 * i + 1];
    }
    return plan_reads(d, "x3s_set_rois");
}

int32_t x3s_get_chan_settings(x3s_dev *d, uint32_t chan, x3s_chan_settings *out)
{
    if (!d)
        return X3S_E_ARG;
    if (!out || chan >= d->info.n_channels)
        return set_error(d, X3S_E_ARG, "x3s_get_chan_settings: channel %" PRIu32
                         " (the system has %" PRIu32 ") or NULL output", chan,
                         d->info.n_channels);
    *out = d->chans[chan];
    return X3S_OK;
}

int32_t x3s_configure(x3s_dev *d, const x3s_acq_params *a)
{
    if (!d)
        return X3S_E_ARG;
    if (!a)
        return set_error(d, X3S_E_ARG, "x3s_configure: params must not be NULL");
    if (busy(d))
        return set_error(d, X3S_E_STATE,
                         "x3s_configure: not allowed while armed or running (stop first)");
    if (a->exposure_ticks < 1 || a->gap_mode > 3 || a->trigger > X3S_TRIG_GATE ||
        a->debounce_ticks > 255 || a->invert_f0 > 1 || a->invert_veto > 1 ||
        a->n_frames > (uint64_t)INT32_MAX)
        return set_error(d, X3S_E_ARG,
                         "x3s_configure: n_frames %" PRIu64 ", exposure %" PRIu32
                         " ticks, gap mode %" PRIu32 ", trigger %" PRIu32 ", debounce %" PRIu32
                         ": need n_frames <= 2^31-1, exposure >= 1, gap 0..3, trigger 0..5, "
                         "debounce 0..255, inversions 0 or 1",
                         a->n_frames, a->exposure_ticks, a->gap_mode, a->trigger,
                         a->debounce_ticks);
    d->acq = *a;
    d->configured = 1;
    return X3S_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Run control.
 */

int32_t x3s_arm(x3s_dev *d)
{
    if (!d)
        return X3S_E_ARG;
    if (busy(d))
        return set_error(d, X3S_E_STATE, "x3s_arm: already armed (stop first)");
    if (!d->configured)
        return set_error(d, X3S_E_STATE, "x3s_arm: configure an acquisition first");
    const x3s_acq_params *a = &d->acq;
    int64_t rc;
    SDK(d, rc, "xsp3_histogram_stop", xsp3_histogram_stop(d->path, -1));
    if (rc < 0)
        return (int32_t)rc;
    SDK(d, rc, "xsp3_histogram_clear",
        xsp3_histogram_clear(d->path, 0, (int)d->info.n_channels, 0, (int)d->info.ring_frames));
    if (rc < 0)
        return (int32_t)rc;

    int tf = a->n_frames == 0 ? INT32_MAX : (int)a->n_frames;
    int itfg_mode = X3S_ITFG_BURST;
    int software = 0;
    switch (a->trigger) {
    case X3S_TRIG_INTERNAL: itfg_mode = X3S_ITFG_BURST; break;
    case X3S_TRIG_SOFTWARE: itfg_mode = X3S_ITFG_SOFTWARE; software = 1; break;
    case X3S_TRIG_SOFTWARE_FIRST: itfg_mode = X3S_ITFG_SOFTWARE_ONLY_FIRST; software = 1; break;
    case X3S_TRIG_EXTERNAL: itfg_mode = X3S_ITFG_HARDWARE; break;
    case X3S_TRIG_EXTERNAL_FIRST: itfg_mode = X3S_ITFG_HARDWARE_ONLY_FIRST; break;
    default: break; /* gate: no ITFG */
    }
    int gate = a->trigger == X3S_TRIG_GATE;
    if (!gate) {
        /* Card 0's time-frame generator times the frames of every card. */
        SDK(d, rc, "xsp3_itfg_setup",
            xsp3_itfg_setup(d->path, 0, tf, a->exposure_ticks, itfg_mode, (int)a->gap_mode));
        if (rc < 0)
            return (int32_t)rc;
    }
    /*
     * The whole system's time framing in one call (the manual: it replaces per-card
     * xsp3_set_glob_timeA; Odin uses it): card 0 takes its frames from the ITFG or the TTL veto
     * input, with the user's inversions and debounce; the library sets the other cards to follow
     * card 0.
     */
    Xsp3Timing timing;
    memset(&timing, 0, sizeof timing);
    timing.t_src = gate ? X3S_GTIMA_SRC_TTL_VETO_ONLY : X3S_GTIMA_SRC_INTERNAL;
    timing.fixed = 0;
    timing.inv_f0 = a->invert_f0 != 0;
    timing.inv_veto = a->invert_veto != 0;
    timing.debounce = (int)a->debounce_ticks;
    SDK(d, rc, "xsp3_set_timing", xsp3_set_timing(d->path, &timing));
    if (rc < 0)
        return (int32_t)rc;

    d->frames_complete = 0;
    d->furthest = 0;
    d->overrun_count = 0;
    d->first_overrun = -1;
    d->err_flags = 0;
    d->fault_code = 0;
    d->pending_fault = 0;
    d->sdk_stopped = 0;
    d->stall_since_ns = mono_ns();
    d->stall_value = 0;

    /* The following cards first, so they are running before card 0 times the first frame (as
     * Odin does); then card 0, armed for software triggers (continue/pause) or started. */
    for (uint32_t card = 1; card < d->n_cards; card++) {
        SDK(d, rc, "xsp3_histogram_start", xsp3_histogram_start(d->path, (int)card));
        if (rc < 0)
            return (int32_t)rc;
    }
    if (software)
        SDK(d, rc, "xsp3_histogram_arm", xsp3_histogram_arm(d->path, 0));
    else
        SDK(d, rc, "xsp3_histogram_start", xsp3_histogram_start(d->path, 0));
    if (rc < 0)
        return (int32_t)rc;
    d->state = a->trigger == X3S_TRIG_INTERNAL ? X3S_STATE_RUNNING : X3S_STATE_ARMED;
    return X3S_OK;
}

int32_t x3s_soft_trigger(x3s_dev *d)
{
    if (!d)
        return X3S_E_ARG;
    if (!busy(d) ||
        (d->acq.trigger != X3S_TRIG_SOFTWARE && d->acq.trigger != X3S_TRIG_SOFTWARE_FIRST))
        return set_error(d, X3S_E_STATE,
                         "x3s_soft_trigger: needs an armed acquisition in a software trigger mode");
    int64_t rc;
    SDK(d, rc, "xsp3_histogram_continue", xsp3_histogram_continue(d->path, 0));
    if (rc < 0)
        return (int32_t)rc;
    SDK(d, rc, "xsp3_histogram_pause", xsp3_histogram_pause(d->path, 0));
    if (rc < 0)
        return (int32_t)rc;
    return X3S_OK;
}

int32_t x3s_stop(x3s_dev *d)
{
    if (!d)
        return X3S_E_ARG;
    if (d->state == X3S_STATE_IDLE)
        return X3S_OK;
    int64_t rc;
    SDK(d, rc, "xsp3_histogram_stop", xsp3_histogram_stop(d->path, -1));
    if (rc < 0)
        return (int32_t)rc;
    d->sdk_stopped = 1;
    if (busy(d))
        d->state = X3S_STATE_DONE;
    return X3S_OK;
}

static void fill_progress(const x3s_dev *d, x3s_progress *out)
{
    if (!out)
        return;
    out->frames_complete = d->frames_complete;
    out->furthest_frame = d->furthest;
    out->overrun_count = d->overrun_count;
    out->first_overrun = d->first_overrun;
    out->err_flags = d->err_flags;
    out->state = d->state;
}

/* Enters FAULT with the current error text as the fault's text. */
static int32_t fault(x3s_dev *d, int32_t code)
{
    d->state = X3S_STATE_FAULT;
    d->fault_code = code;
    d->pending_fault = 0;
    pthread_mutex_lock(&d->err_mu);
    memcpy(d->fault_msg, d->err_msg, sizeof d->fault_msg);
    pthread_mutex_unlock(&d->err_mu);
    return code;
}

/* Reports the fault again, with its own text (later calls may have recorded other errors). */
static int32_t sticky_fault(x3s_dev *d, x3s_progress *out)
{
    set_error(d, d->fault_code, "%s", d->fault_msg);
    fill_progress(d, out);
    return d->fault_code;
}

static void describe_flags(uint32_t flags, char *buf, size_t len)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {
        {0x4, "HistFramesOverRun"},   {0x8, "HistFramesMissing"},
        {0x10, "ScalarOverRun"},      {0x20, "ScalarMissing"},
        {0x40, "DiagHistOverRun"},    {0x200, "DescOverrun"},
        {0x400, "TFMismatch"},        {0x800, "DescSofEof"},
        {0x1000, "DescCount"},        {0x2000, "SocketError"},
        {0x10000, "CircBuffOverRun"}, {0x20000, "DescOverrunScalars"},
        {0x40000, "TFMismatchScalars"}, {0x80000, "DescSofEofScalars"},
        {0x100000, "DescCountScalars"}, {0x200000, "SocketErrorScalars"},
        {0x1000000, "CircBuffOverRunScalars"},
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((flags & names[i].bit) && used < len) {
            int n = snprintf(buf + used, len - used, "%s%s", used ? "|" : "", names[i].name);
            if (n > 0)
                used += (size_t)n;
        }
    }
}

int32_t x3s_poll(x3s_dev *d, x3s_progress *out)
{
    if (!d)
        return X3S_E_ARG;
    if (d->state == X3S_STATE_IDLE) {
        fill_progress(d, out);
        return X3S_OK;
    }
    if (d->state == X3S_STATE_FAULT)
        return sticky_fault(d, out);
    if (d->pending_fault) {
        int32_t code = d->pending_fault;
        set_error(d, code, "%s", d->fault_msg);
        fault(d, code);
        fill_progress(d, out);
        return d->fault_code;
    }
    uint32_t flags = 0;
    int64_t furthest = 0;
    int64_t rc = sdk_progress(d, &flags, &furthest);
    d->err_flags = flags;
    if (rc < 0) {
        fault(d, (int32_t)rc);
        fill_progress(d, out);
        return d->fault_code;
    }
    int64_t first = -1;
    int64_t overruns;
    SDK(d, overruns, "xsp3_histogram_get_circ_overrun",
        xsp3_histogram_get_circ_overrun(d->path, -1, &first));
    if (overruns < 0) {
        fault(d, (int32_t)overruns);
        fill_progress(d, out);
        return d->fault_code;
    }
    uint64_t frames = (uint64_t)rc;
    uint64_t far = (uint64_t)furthest;
    if (d->acq.n_frames > 0) {
        if (frames > d->acq.n_frames)
            frames = d->acq.n_frames;
        if (far > d->acq.n_frames)
            far = d->acq.n_frames;
    }
    d->frames_complete = frames;
    d->furthest = far;
    d->overrun_count = (uint64_t)overruns;
    d->first_overrun = overruns > 0 ? first : -1;

    uint32_t fatal = flags & ~(X3S_FLAGS_OVERRUN | X3S_FLAGS_BENIGN);
    if (fatal) {
        char names[256];
        describe_flags(fatal, names, sizeof names);
        set_error(d, XSP3_ERROR, "x3s_poll: SDK error flags 0x%" PRIx32 " (%s) at frame %" PRIu64,
                  flags, names, frames);
        fault(d, XSP3_ERROR);
        fill_progress(d, out);
        return d->fault_code;
    }

    /* Watchdog: the detector is ahead but frames_complete has not moved for the timeout. */
    uint64_t now = mono_ns();
    if (frames != d->stall_value || far <= frames) {
        d->stall_value = frames;
        d->stall_since_ns = now;
    } else if (d->progress_timeout_ms > 0 &&
               now - d->stall_since_ns > (uint64_t)d->progress_timeout_ms * 1000000ull) {
        set_error(d, X3S_E_TIMEOUT,
                  "x3s_poll: progress stalled: frames_complete stuck at %" PRIu64
                  " for more than %" PRIu32 " ms while the detector reached frame %" PRIu64,
                  frames, d->progress_timeout_ms, far);
        fault(d, X3S_E_TIMEOUT);
        fill_progress(d, out);
        return d->fault_code;
    }

    if (d->acq.n_frames > 0 && frames >= d->acq.n_frames) {
        if (!d->sdk_stopped) {
            SDK(d, rc, "xsp3_histogram_stop", xsp3_histogram_stop(d->path, -1));
            if (rc < 0) {
                fault(d, (int32_t)rc);
                fill_progress(d, out);
                return d->fault_code;
            }
            d->sdk_stopped = 1;
        }
        d->state = X3S_STATE_DONE;
    } else if (d->state == X3S_STATE_ARMED && frames > 0) {
        d->state = X3S_STATE_RUNNING;
    }
    fill_progress(d, out);
    return X3S_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Readout.
 */

/* Common checks of a read or release of [first, first + n). */
static int32_t check_range(x3s_dev *d, const char *fn, uint64_t first, uint32_t n)
{
    if (d->state == X3S_STATE_IDLE)
        return set_error(d, X3S_E_STATE, "%s: no acquisition has been armed", fn);
    if (first > UINT64_MAX - n)
        return set_error(d, X3S_E_ARG, "%s: first %" PRIu64 " + n %" PRIu32 " overflows", fn,
                         first, n);
    if (n > d->info.ring_frames)
        return set_error(d, X3S_E_ARG, "%s: %" PRIu32 " frames exceed the %" PRIu64
                         "-frame SDK buffer", fn, n, d->info.ring_frames);
    if (first + n > d->frames_complete) {
        /* Maybe more is complete than the last poll saw. */
        int64_t rc = sdk_progress(d, NULL, NULL);
        if (rc > 0) {
            uint64_t f = (uint64_t)rc;
            if (d->acq.n_frames > 0 && f > d->acq.n_frames)
                f = d->acq.n_frames;
            if (f > d->frames_complete)
                d->frames_complete = f;
        }
        if (first + n > d->frames_complete)
            return set_error(d, X3S_E_NOT_READY,
                             "%s: frames [%" PRIu64 ", %" PRIu64
                             ") are not complete (frames_complete = %" PRIu64 ")",
                             fn, first, first + n, d->frames_complete);
    }
    return X3S_OK;
}

/* Frame `first` is overwritten once the next frame in its slot has completed (normally frame
 * first + ring_frames; sooner just before a wrap of the SDK's 32-bit frame address). */
static int32_t check_overrun(x3s_dev *d, const char *fn, uint64_t first, uint64_t complete)
{
    if (x3s_sdk_overwriter(first, d->info.ring_frames) < complete)
        return set_error(d, X3S_E_OVERRUN,
                         "%s: frame %" PRIu64 " was overwritten in the %" PRIu64
                         "-frame SDK circular buffer (the SDK has completed %" PRIu64 " frames)",
                         fn, first, d->info.ring_frames, complete);
    return X3S_OK;
}

/* After a copy: if the SDK overwrote even the last frame meanwhile, the whole copy may be torn.
 * Frames at the front that the SDK overwrote during the copy are the caller's to drop, frame by
 * frame (see x3s_read_mca): refusing the whole copy for them would make a reader that is one
 * buffer behind lose every read, never catching up. */
static int32_t recheck_overrun(x3s_dev *d, const char *fn, uint64_t last)
{
    int64_t rc = sdk_progress(d, NULL, NULL);
    if (rc < 0)
        return X3S_OK; /* a fault stops production; nothing was overwritten by it */
    return check_overrun(d, fn, last, (uint64_t)rc);
}

typedef int (*read_fn)(x3s_dev *d, uint32_t *dst, uint64_t *rois, unsigned tf, unsigned n);

/* The ROI sums of one channel's spectrum `spectrum` (detector bins from span_first) into
 * out[roi * n_channels]. */
static void sum_rois(const x3s_dev *d, const uint32_t *spectrum, uint32_t chan, uint64_t *out)
{
    size_t nch = d->info.n_channels;
    for (uint32_t r = 0; r < d->n_rois; r++) {
        const uint32_t *range = d->roi_ranges[r][chan];
        uint64_t sum = 0;
        if (range[0] <= range[1])
            for (uint32_t b = range[0]; b <= range[1]; b++)
                sum += spectrum[b - d->span_first];
        out[r * nch] = sum;
    }
}

/* Reads n frames from SDK frame tf: the recorded bins straight into dst when that is all there
 * is to read (summing ROIs, when asked, from each cache-sized part just read), else the span
 * through the scratch buffer, where each spectrum gives its ROI sums and its rebinned recorded
 * bins in one visit. rois: NULL, or n frames of ROI sums. */
static int read_mca_chunk(x3s_dev *d, uint32_t *dst, uint64_t *rois, unsigned tf, unsigned n)
{
    int64_t rc;
    unsigned nch = d->info.n_channels;
    size_t frame_rois = (size_t)d->n_rois * nch;
    if (!reads_via_scratch(d)) {
        size_t frame_words = (size_t)nch * d->rec_bins;
        unsigned part = n;
        if (rois && frame_rois > 0) {
            size_t fit = X3S_ROI_CHUNK_WORDS / frame_words;
            part = fit < 1 ? 1 : fit < n ? (unsigned)fit : n;
        }
        for (unsigned done = 0; done < n; done += part) {
            unsigned k = n - done < part ? n - done : part;
            uint32_t *out = dst + (size_t)done * frame_words;
            SDK(d, rc, "xsp3_histogram_read4d",
                xsp3_histogram_read4d(d->path, out, d->rec_first, 0, 0, tf + done, d->rec_bins,
                                      1, nch, k));
            if (rc < 0)
                return (int)rc;
            if (!rois || frame_rois == 0)
                continue;
            for (size_t spectrum = 0; spectrum < (size_t)k * nch; spectrum++) {
                size_t frame = done + spectrum / nch;
                uint32_t chan = (uint32_t)(spectrum % nch);
                sum_rois(d, out + spectrum * d->rec_bins, chan, rois + frame * frame_rois + chan);
            }
        }
        return X3S_OK;
    }
    if (!d->scratch) /* its allocation failed in x3s_set_recording / x3s_set_rois */
        return set_error(d, XSP3_OUT_OF_MEMORY, "x3s_read_mca: no read buffer (set the recording "
                                                "or the ROIs again)");
    size_t out_bins = d->rec_bins / d->rec_rebin;
    uint32_t rec_offset = d->rec_first - d->span_first;
    for (unsigned done = 0; done < n;) {
        unsigned k = n - done < d->scratch_frames ? n - done : d->scratch_frames;
        SDK(d, rc, "xsp3_histogram_read4d",
            xsp3_histogram_read4d(d->path, d->scratch, d->span_first, 0, 0, tf + done,
                                  d->span_bins, 1, nch, k));
        if (rc < 0)
            return (int)rc;
        uint32_t *out = dst + (size_t)done * nch * out_bins;
        for (size_t spectrum = 0; spectrum < (size_t)k * nch; spectrum++) {
            const uint32_t *span = d->scratch + spectrum * d->span_bins;
            if (rois && frame_rois > 0) {
                size_t frame = done + spectrum / nch;
                uint32_t chan = (uint32_t)(spectrum % nch);
                sum_rois(d, span, chan, rois + frame * frame_rois + chan);
            }
            const uint32_t *in = span + rec_offset;
            for (size_t b = 0; b < out_bins; b++) {
                uint32_t sum = 0;
                for (uint32_t j = 0; j < d->rec_rebin; j++)
                    sum += *in++;
                *out++ = sum;
            }
        }
        done += k;
    }
    return X3S_OK;
}

static int read_scaler_chunk(x3s_dev *d, uint32_t *dst, uint64_t *rois, unsigned tf, unsigned n)
{
    (void)rois; /* scalers carry no ROI sums */
    int64_t rc;
    SDK(d, rc, "xsp3_scaler_read",
        xsp3_scaler_read(d->path, dst, 0, 0, tf, X3S_N_SCALERS, d->info.n_channels, n));
    return (int)rc;
}

/* Reads frames [first, first + n) with `chunk` into dst (words_per_frame each) and, when rois
 * is not NULL, their ROI sums into rois (roi_words u64, n_rois * n_channels per frame). */
static int32_t read_frames(x3s_dev *d, const char *fn, uint64_t first, uint32_t n, uint32_t *dst,
                           size_t dst_words, size_t words_per_frame, uint64_t *rois,
                           size_t roi_words, read_fn chunk)
{
    if (!d)
        return X3S_E_ARG;
    int32_t rc = check_range(d, fn, first, n);
    if (rc < 0)
        return rc;
    if (n == 0)
        return 0;
    if (!dst)
        return set_error(d, X3S_E_ARG, "%s: dst must not be NULL", fn);
    if (dst_words / words_per_frame < n)
        return set_error(d, X3S_E_BUFSIZE,
                         "%s: %" PRIu32 " frames need %zu words, the buffer has %zu", fn, n,
                         (size_t)n * words_per_frame, dst_words);
    size_t rois_per_frame = (size_t)d->n_rois * d->info.n_channels;
    if (rois && rois_per_frame > 0 && roi_words / rois_per_frame < n)
        return set_error(d, X3S_E_BUFSIZE,
                         "%s: %" PRIu32 " frames need %zu ROI sums, the buffer has %zu", fn, n,
                         (size_t)n * rois_per_frame, roi_words);
    rc = check_overrun(d, fn, first, d->frames_complete);
    if (rc < 0)
        return rc;
    /* Split where the SDK's addresses wrap, so every call addresses contiguous slots. */
    uint64_t ring = d->info.ring_frames;
    uint32_t done = 0;
    while (done < n) {
        uint64_t f = first + done;
        uint32_t k = x3s_sdk_run(f, n - done, ring);
        int r = chunk(d, dst + (size_t)done * words_per_frame,
                      rois ? rois + (size_t)done * rois_per_frame : NULL, x3s_sdk_tf(f), k);
        if (r < 0)
            return r;
        done += k;
    }
    rc = recheck_overrun(d, fn, first + n - 1);
    if (rc < 0)
        return rc;
    return (int32_t)n;
}

int32_t x3s_read_mca(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst, size_t dst_words)
{
    if (!d)
        return X3S_E_ARG;
    return read_frames(d, "x3s_read_mca", first, n, dst, dst_words,
                       (size_t)d->info.n_channels * (d->rec_bins / d->rec_rebin), NULL, 0,
                       read_mca_chunk);
}

int32_t x3s_read_mca_rois(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst, size_t dst_words,
                          uint64_t *rois, size_t roi_words)
{
    if (!d)
        return X3S_E_ARG;
    if (!rois && d->n_rois > 0)
        return set_error(d, X3S_E_ARG, "x3s_read_mca_rois: rois must not be NULL");
    return read_frames(d, "x3s_read_mca_rois", first, n, dst, dst_words,
                       (size_t)d->info.n_channels * (d->rec_bins / d->rec_rebin), rois,
                       roi_words, read_mca_chunk);
}

int32_t x3s_read_scalers(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst,
                         size_t dst_words)
{
    if (!d)
        return X3S_E_ARG;
    return read_frames(d, "x3s_read_scalers", first, n, dst, dst_words,
                       (size_t)d->info.n_channels * X3S_N_SCALERS, NULL, 0,
                       read_scaler_chunk);
}

int32_t x3s_release(x3s_dev *d, uint64_t first, uint32_t n)
{
    if (!d)
        return X3S_E_ARG;
    int32_t rc = check_range(d, "x3s_release", first, n);
    if (rc < 0)
        return rc;
    uint64_t ring = d->info.ring_frames;
    uint32_t done = 0;
    while (done < n) {
        uint64_t f = first + done;
        uint32_t k = x3s_sdk_run(f, n - done, ring);
        int64_t r;
        /* The same address as the reads (x3s_frame_addr.h). */
        SDK(d, r, "xsp3_histogram_circ_ack",
            xsp3_histogram_circ_ack(d->path, 0, x3s_sdk_tf(f), d->info.n_channels, k));
        if (r < 0)
            return (int32_t)r;
        done += k;
    }
    return (int32_t)n;
}

/* ---------------------------------------------------------------------------------------------
 * The simulator.
 */

int32_t x3s_sim_get_record(x3s_dev *d, x3s_sim_record *out)
{
    if (!d)
        return X3S_E_ARG;
    if (!out)
        return set_error(d, X3S_E_ARG, "x3s_sim_get_record: out must not be NULL");
#ifdef X3S_WITH_SIM
    int64_t rc;
    SDK(d, rc, "xsp3_sim_get_record", xsp3_sim_get_record(d->path, out));
    return rc < 0 ? (int32_t)rc : X3S_OK;
#else
    return set_error(d, X3S_E_BACKEND, "x3s_sim_get_record: the shim runs over the real SDK");
#endif
}

int32_t x3s_sim_expected_frame(const x3s_sim_params *sim, uint32_t n_channels,
                               uint32_t exposure_ticks, const uint32_t *windows,
                               const uint32_t *good_thres, uint64_t frame, uint32_t *mca,
                               size_t mca_words, uint32_t *scalers, size_t scaler_words)
{
    if (!sim || n_channels < 1 || n_channels > X3S_MAX_CHANNELS || sim->content > X3S_SIM_PATTERN)
        return X3S_E_ARG;
    if ((mca && mca_words < (size_t)n_channels * X3S_SIM_BINS) ||
        (scalers && scaler_words < (size_t)n_channels * X3S_N_SCALERS))
        return X3S_E_BUFSIZE;
    uint32_t tmp[X3S_SIM_BINS];
    for (uint32_t c = 0; c < n_channels; c++) {
        uint32_t *spec = mca ? mca + (size_t)c * X3S_SIM_BINS : tmp;
        if (mca || sim->content != X3S_SIM_PATTERN)
            x3s_sim_gen_mca(sim, NULL, frame, c, spec);
        if (scalers) {
            uint32_t win[4] = {0, X3S_SIM_BINS - 1, 0, X3S_SIM_BINS - 1};
            if (windows)
                memcpy(win, windows + (size_t)c * 4, sizeof win);
            uint32_t good = good_thres ? good_thres[c] : 0;
            x3s_sim_gen_scalers(sim, frame, c, exposure_ticks, win, good, spec,
                                scalers + (size_t)c * X3S_N_SCALERS);
        }
    }
    return X3S_OK;
}
