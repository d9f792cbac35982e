/*
 * xsp3_sim.c: a simulated Xspress3 SDK. It implements the xsp3_* subset declared in xsp3_api.h,
 * so the shim (x3s.c) runs unchanged over it or over the real libxspress3.
 *
 * Model (docs/sdk-sim.md has the full contract):
 *  - Each path (handle) owns a circular buffer of num_tf frame slots. The simulated detector
 *    completes frames at the configured rate: ITFG bursts (exposure + gap), one frame per software
 *    continue/pause, or TTL triggers / gates at sim.ext_trigger_hz. A background thread advances
 *    the detector in real time; every progress query also advances it, so progress is exact.
 *  - Frame content is a pure function of (seed, frame, channel) and is generated when read, from
 *    the frame that currently occupies the slot: a frame whose slot was reused reads back as the
 *    newer frame, as on the hardware.
 *  - A slot reused before its frame was acknowledged sets Xsp3ErrFlag_CircBuffOverRun and counts
 *    an overrun (Xspress3/4); in Mini mode the run stops with an error instead. With full_speed the
 *    detector never overwrites an unacknowledged slot: it runs as fast as the reader releases.
 *  - Everything is allocated in xsp3_config; nothing after.
 *  - Fault injection: device not found at config, an error at frame k, a stalled progress counter,
 *    a slow RX.
 *  - Frame f lives in slot x3s_sdk_slot(f, num_tf) (x3s_frame_addr.h), the SDK's addressing; a
 *    run may start at frame sim.frame_base instead of 0 to reach frame 2^32 in a test.
 *  - Every setting given is recorded (xsp3_sim_get_record): clocks, sync, timing and ITFG per
 *    card, windows and thresholds per channel, the order cards were started in. The clock
 *    source must be the one the simulated box has (Mk2 Mini: the midplane's; an Xspress3's
 *    other cards: card 0's over the clock LEMO), and only card 0 may be clock master.
 *  - Multi-card systems: the channels are shared out over the cards and numbered across them.
 *    Card 0 times every card: it starts the run, and the other cards must be running and
 *    following its timing by then.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "x3s_frame_addr.h"
#include "x3s_sim_content.h"
#include "xsp3_api.h"
#include "xsp3_sim.h"

#define SLOT_EMPTY UINT64_MAX
#define UNBOUNDED UINT64_MAX
/* RX backlog (frames) beyond which a slow RX is a descriptor overrun. */
#define SLOW_RX_BACKLOG 16u
#define SIM_REVISION 0x00030001
#define SIM_DEFAULT_IP "192.168.0.2"

enum run_state { RUN_STOPPED = 0, RUN_RUNNING = 1, RUN_FINISHED = 2 };
enum card_run { CARD_STOPPED = 0, CARD_STARTED = 1, CARD_ARMED = 2 };

/* One card as programmed. Card 0 is the master: its timing and ITFG make the frames. */
struct sim_card {
    int clk_src; /* -1: never set */
    int clk_flags;
    uint32_t time_a; /* global timing register A */
    uint32_t time_fixed;
    int itfg_set;
    uint64_t itfg_frames;
    uint32_t col_time;
    int trig_mode;
    int gap_mode;
    enum card_run run;
    uint32_t start_seq;
};

struct sim_path {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int quit;

    x3s_sim_params p;
    uint32_t n_cards;
    uint32_t card_nch[XSP3_MAX_CARDS]; /* channels of each card, numbered across the cards */
    struct sim_card cards[XSP3_MAX_CARDS];
    uint32_t start_counter;
    uint32_t nch;
    uint32_t num_tf;
    uint32_t run_flags;

    /* Slot s holds frame slot_frame[s] (SLOT_EMPTY: none); slot_acks[s] channels acknowledged. */
    uint64_t *slot_frame;
    uint32_t *slot_acks;
    uint32_t (*win)[4];
    uint32_t *good;
    x3s_sim_table *table; /* spectrum content tables, computed once at config */
    uint32_t *event_width; /* per channel, from the parameters or the settings directory */

    /* Sync and whole-system timing as programmed (-1: never). */
    int sync_mode;
    uint32_t timing_calls;
    Xsp3Timing timing;

    /* The current run. */
    enum run_state run;
    uint64_t t0_ns;          /* start (or arm) */
    int first_trig;          /* software-only-first: first continue seen */
    uint64_t t_first_ns;
    int cont_pending;        /* software: continue seen, pause completes the frame */
    uint64_t sw_frames;
    uint64_t target;         /* frames this run produces (UNBOUNDED) */
    uint32_t exposure_ticks; /* Time scaler of this run's frames */
    uint64_t produced;       /* frames [0, produced) complete */
    uint64_t furthest;       /* frames the detector reached */
    uint64_t overrun_count;
    int64_t first_overrun;
    uint32_t err_flags;
    int32_t fault_code; /* 0: healthy */
    int fault_reported; /* the progress query returned the fault once; now it returns flags only */
    char fault_msg[256];
};

/* The SDK keeps one static message buffer (not thread-safe); so does the simulator. */
static char g_msg[XSP3_MAX_MSG_LEN] = "no error";
static pthread_mutex_t g_paths_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sim_path *g_paths[XSP3_MAX_PATH];

static _Thread_local x3s_sim_params t_next_params;
static _Thread_local int t_next_params_set;

static void set_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void xsp3_sim_set_params(const x3s_sim_params *p)
{
    t_next_params = *p;
    t_next_params_set = 1;
}

char *xsp3_get_error_message(void)
{
    return g_msg;
}

/* Looks a path up; on failure sets the message. */
static struct sim_path *get_path(int path, const char *fn)
{
    struct sim_path *sp = NULL;
    if (path >= 0 && path < XSP3_MAX_PATH) {
        pthread_mutex_lock(&g_paths_mu);
        sp = g_paths[path];
        pthread_mutex_unlock(&g_paths_mu);
    }
    if (!sp)
        set_msg("%s: invalid path %d", fn, path);
    return sp;
}

static int check_card(struct sim_path *sp, int card, const char *fn)
{
    if (card < -1 || card >= (int)sp->n_cards) {
        set_msg("%s: illegal card %d (system has %u)", fn, card, sp->n_cards);
        return XSP3_ILLEGAL_CARD;
    }
    return XSP3_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The detector model. Every function below runs with sp->mu held.
 */

static uint64_t gap_ns(int gap_mode)
{
    static const uint64_t g[4] = {25, 200, 500, 1000};
    return g[gap_mode & 3];
}

/* ITFG frame period in ns: exposure ticks at 12.5 ns plus the gap. */
static double itfg_period_ns(const struct sim_path *sp)
{
    return (double)sp->cards[0].col_time * 12.5 + (double)gap_ns(sp->cards[0].gap_mode);
}

static uint64_t frames_in(double elapsed_ns, double period_ns)
{
    if (elapsed_ns <= 0.0)
        return 0;
    if (period_ns <= 0.0)
        return UNBOUNDED;
    double n = elapsed_ns / period_ns;
    return n >= 1.8e19 ? UNBOUNDED : (uint64_t)n;
}

/* Frames the detector has reached at time now (before the RX and buffer limits). */
static uint64_t detector_frames(const struct sim_path *sp, uint64_t now)
{
    double elapsed = (double)(now - sp->t0_ns);
    double ext_period = sp->p.ext_trigger_hz > 0.0 ? 1e9 / sp->p.ext_trigger_hz : 0.0;
    uint32_t src = XSP3_GLOB_TIMA_TF_SRC(sp->cards[0].time_a);
    int full = sp->p.full_speed != 0;

    if (src == XSP3_GTIMA_SRC_TTL_VETO_ONLY || src == XSP3_GTIMA_SRC_TTL_BOTH) {
        if (full)
            return UNBOUNDED;
        return ext_period > 0.0 ? frames_in(elapsed, ext_period) : 0;
    }
    if (src != XSP3_GTIMA_SRC_INTERNAL)
        return sp->sw_frames; /* software timed: one frame per continue/pause */

    double period = full ? 0.0 : itfg_period_ns(sp);
    switch (sp->cards[0].trig_mode) {
    case XSP3_ITFG_TRIG_MODE_BURST:
        return full ? UNBOUNDED : frames_in(elapsed, period);
    case XSP3_ITFG_TRIG_MODE_HARDWARE:
        if (full)
            return UNBOUNDED;
        if (ext_period <= 0.0)
            return 0;
        return frames_in(elapsed, ext_period > period ? ext_period : period);
    case XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST:
        if (full)
            return UNBOUNDED;
        if (ext_period <= 0.0)
            return 0;
        return frames_in(elapsed - ext_period, period);
    case XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST:
        if (!sp->first_trig)
            return 0;
        return full ? UNBOUNDED : frames_in((double)(now - sp->t_first_ns), period);
    default: /* XSP3_ITFG_TRIG_MODE_SOFTWARE */
        return sp->sw_frames;
    }
}

static void fault(struct sim_path *sp, int32_t code, uint32_t flags, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fault(struct sim_path *sp, int32_t code, uint32_t flags, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp->fault_msg, sizeof sp->fault_msg, fmt, ap);
    va_end(ap);
    sp->fault_code = code < 0 ? code : XSP3_ERROR;
    sp->err_flags |= flags;
}

/* Completes every frame due at time now, modelling the circular buffer. */
static void advance(struct sim_path *sp, uint64_t now)
{
    if (sp->run != RUN_RUNNING || sp->fault_code != 0)
        return;
    uint64_t base = sp->p.frame_base;
    uint64_t due = detector_frames(sp, now);
    due = due > UNBOUNDED - base ? UNBOUNDED : due + base;
    if (due > sp->target)
        due = sp->target;
    uint64_t rx_cap = UNBOUNDED;
    if (sp->p.slow_rx_hz > 0.0) {
        rx_cap = frames_in((double)(now - sp->t0_ns), 1e9 / sp->p.slow_rx_hz);
        rx_cap = rx_cap > UNBOUNDED - base ? UNBOUNDED : rx_cap + base;
    }
    int full = sp->p.full_speed != 0;
    int circular = (sp->run_flags & XSP3_RUN_FLAGS_CIRCULAR_BUFFER) != 0;
    int blocked = 0;

    while (sp->produced < due && sp->produced < rx_cap) {
        uint64_t f = sp->produced;
        if (sp->p.stall_at_frame >= 0 && f - base >= (uint64_t)sp->p.stall_at_frame) {
            blocked = 1;
            break;
        }
        if (sp->p.error_at_frame >= 0 && f - base == (uint64_t)sp->p.error_at_frame) {
            fault(sp, sp->p.error_code, Xsp3ErrFlag_SocketError,
                  "xsp3_sim: injected error at frame %llu: socket error on the 10G data link",
                  (unsigned long long)f);
            break;
        }
        if (!circular && f - base >= sp->num_tf) {
            fault(sp, XSP3_ERROR, Xsp3ErrFlag_HistFramesOverRun,
                  "xsp3_sim: frame %llu does not fit the %u-frame buffer (not in circular mode)",
                  (unsigned long long)f, sp->num_tf);
            break;
        }
        uint64_t slot = x3s_sdk_slot(f, sp->num_tf);
        uint64_t prev = sp->slot_frame[slot];
        if (prev != SLOT_EMPTY && sp->slot_acks[slot] < sp->nch) {
            if (full) {
                blocked = 1;
                break;
            }
            if (sp->p.mini) {
                fault(sp, XSP3_ERROR, Xsp3ErrFlag_HistFramesOverRun,
                      "xsp3_sim (Mini): circular buffer overrun: frame %llu needs the slot of "
                      "frame %llu, which was not acknowledged; DMA stopped",
                      (unsigned long long)f, (unsigned long long)prev);
                break;
            }
            sp->overrun_count++;
            if (sp->first_overrun < 0)
                sp->first_overrun = (int64_t)prev;
            sp->err_flags |= Xsp3ErrFlag_CircBuffOverRun | Xsp3ErrFlag_CircBuffOverRunScalars;
        }
        sp->slot_frame[slot] = f;
        sp->slot_acks[slot] = 0;
        sp->produced++;
    }
    if (full) {
        uint64_t reached = sp->produced + (uint64_t)(blocked && sp->produced < due);
        if (reached > sp->furthest)
            sp->furthest = reached;
    } else if (due > sp->furthest) {
        sp->furthest = due;
    }
    if (sp->fault_code == 0 && sp->p.slow_rx_hz > 0.0 &&
        sp->furthest > sp->produced + SLOW_RX_BACKLOG) {
        fault(sp, XSP3_ERROR, Xsp3ErrFlag_DescOverrun,
              "xsp3_sim: RX too slow (injected slow RX at %.1f frames/s): detector at frame "
              "%llu, RX at frame %llu; receive descriptors overrun",
              sp->p.slow_rx_hz, (unsigned long long)sp->furthest,
              (unsigned long long)sp->produced);
    }
    if (sp->produced >= sp->target)
        sp->run = RUN_FINISHED;
}

/*
 * Whether frames complete with the passing of time alone (then the thread wakes periodically).
 * Otherwise they come from calls (continue/pause, acks at full speed) that signal the thread.
 */
static int frames_can_come_by_time(const struct sim_path *sp)
{
    if (sp->run != RUN_RUNNING || sp->fault_code != 0 || sp->p.full_speed)
        return 0;
    uint32_t src = XSP3_GLOB_TIMA_TF_SRC(sp->cards[0].time_a);
    int ext = sp->p.ext_trigger_hz > 0.0;
    if (src == XSP3_GTIMA_SRC_TTL_VETO_ONLY || src == XSP3_GTIMA_SRC_TTL_BOTH)
        return ext;
    if (src != XSP3_GTIMA_SRC_INTERNAL)
        return 0;
    switch (sp->cards[0].trig_mode) {
    case XSP3_ITFG_TRIG_MODE_BURST: return 1;
    case XSP3_ITFG_TRIG_MODE_HARDWARE:
    case XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST: return ext;
    case XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST: return sp->first_trig;
    default: return 0;
    }
}

/* The acquisition thread: advances the detector in real time. Sleeps between frames. */
static void *sim_thread(void *arg)
{
    struct sim_path *sp = arg;
    pthread_mutex_lock(&sp->mu);
    while (!sp->quit) {
        uint64_t now = mono_ns();
        advance(sp, now);
        if (!frames_can_come_by_time(sp)) {
            pthread_cond_wait(&sp->cv, &sp->mu);
            continue;
        }
        uint32_t src = XSP3_GLOB_TIMA_TF_SRC(sp->cards[0].time_a);
        /* Wake once per frame period, but at most every millisecond and at least every 100 ms. */
        double period = src == XSP3_GTIMA_SRC_INTERNAL ? itfg_period_ns(sp) : 0.0;
        if (sp->p.ext_trigger_hz > 0.0 && 1e9 / sp->p.ext_trigger_hz > period)
            period = 1e9 / sp->p.ext_trigger_hz;
        if (period < 1e6)
            period = 1e6;
        if (period > 1e8)
            period = 1e8;
        uint64_t wake = now + (uint64_t)period;
        struct timespec ts = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
        int rc = pthread_cond_timedwait(&sp->cv, &sp->mu, &ts);
        (void)rc; /* ETIMEDOUT or a signal: either way, loop and advance */
    }
    pthread_mutex_unlock(&sp->mu);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Connection and lifecycle.
 */

static void free_path(struct sim_path *sp)
{
    free(sp->slot_frame);
    free(sp->slot_acks);
    free(sp->win);
    free(sp->good);
    free(sp->table);
    free(sp->event_width);
    free(sp);
}

int xsp3_config(int ncards, int num_tf, char *baseIPaddress, int basePort, char *baseMACaddress,
                int nchan, int createmodule, char *modname, int debug, int card_index)
{
    (void)basePort;
    (void)baseMACaddress;
    (void)createmodule;
    (void)modname;
    (void)debug;
    x3s_sim_params p;
    if (t_next_params_set)
        p = t_next_params;
    else
        x3s_sim_params_defaults(&p);
    t_next_params_set = 0;

    if (p.fail_open) {
        set_msg("xsp3_config: no Xspress3 answered at %s port 30123 or 30124 (simulated "
                "device-not-found)",
                baseIPaddress ? baseIPaddress : SIM_DEFAULT_IP);
        return XSP3_ERR_DEV_NOT_FOUND;
    }
    if (ncards < 1 || ncards > XSP3_MAX_CARDS || card_index > 0) {
        set_msg("xsp3_config: %d cards from card %d: the simulated system has cards 0..%d", ncards,
                card_index, XSP3_MAX_CARDS - 1);
        return XSP3_ILLEGAL_CARD;
    }
    if (p.n_channels < 1 || p.n_channels > XSP3_MAX_CHANS) {
        set_msg("xsp3_config: simulated channel count %u is outside 1..%d", p.n_channels,
                XSP3_MAX_CHANS);
        return XSP3_RANGE_CHECK;
    }
    if (num_tf < 1) {
        set_msg("xsp3_config: num_tf %d: the frame count must be given explicitly", num_tf);
        return XSP3_RANGE_CHECK;
    }
    if (p.n_channels < (uint32_t)ncards ||
        (p.n_channels + (uint32_t)ncards - 1) / (uint32_t)ncards > XSP3_MAX_CHANS_PER_CARD) {
        set_msg("xsp3_config: %u channels on %d cards: each card has 1..%d channels",
                p.n_channels, ncards, XSP3_MAX_CHANS_PER_CARD);
        return XSP3_RANGE_CHECK;
    }
    if (nchan == 0 || nchan < -1 || nchan > (int)p.n_channels) {
        set_msg("xsp3_config: %d channels requested, the system has %u", nchan, p.n_channels);
        return XSP3_RANGE_CHECK;
    }
    if (p.content > X3S_SIM_PATTERN || p.error_code >= 0 || p.ext_trigger_hz < 0.0 ||
        p.slow_rx_hz < 0.0 || (p.mini_plus && !p.mini) || p.frame_base > (UINT64_MAX >> 1)) {
        set_msg("xsp3_config: invalid simulator parameters (content %u, error_code %d, "
                "ext_trigger_hz %g, slow_rx_hz %g, mini %u, mini_plus %u, frame_base %llu; "
                "mini_plus needs mini)",
                p.content, p.error_code, p.ext_trigger_hz, p.slow_rx_hz, p.mini, p.mini_plus,
                (unsigned long long)p.frame_base);
        return XSP3_RANGE_CHECK;
    }

    struct sim_path *sp = calloc(1, sizeof *sp);
    if (!sp) {
        set_msg("xsp3_config: out of memory");
        return XSP3_OUT_OF_MEMORY;
    }
    sp->p = p;
    sp->n_cards = (uint32_t)ncards;
    sp->nch = nchan < 0 ? p.n_channels : (uint32_t)nchan;
    sp->num_tf = (uint32_t)num_tf;
    sp->run_flags = XSP3_RUN_FLAGS_SCALERS | XSP3_RUN_FLAGS_HIST;
    sp->slot_frame = malloc(sizeof *sp->slot_frame * sp->num_tf);
    sp->slot_acks = calloc(sp->num_tf, sizeof *sp->slot_acks);
    sp->win = calloc(sp->nch, sizeof *sp->win);
    sp->good = calloc(sp->nch, sizeof *sp->good);
    sp->table = malloc(sizeof *sp->table);
    sp->event_width = calloc(sp->nch, sizeof *sp->event_width);
    if (!sp->slot_frame || !sp->slot_acks || !sp->win || !sp->good || !sp->table ||
        !sp->event_width) {
        free_path(sp);
        set_msg("xsp3_config: out of memory for %d frames", num_tf);
        return XSP3_OUT_OF_MEMORY;
    }
    for (uint32_t s = 0; s < sp->num_tf; s++)
        sp->slot_frame[s] = SLOT_EMPTY;
    x3s_sim_table_init(&sp->p, sp->table);
    for (uint32_t c = 0; c < sp->nch; c++) {
        sp->event_width[c] = p.event_width + c % 4u;
        sp->win[c][0] = 0;
        sp->win[c][1] = X3S_SIM_BINS - 1;
        sp->win[c][2] = 0;
        sp->win[c][3] = X3S_SIM_BINS - 1;
    }
    sp->first_overrun = -1;
    sp->target = UNBOUNDED;
    for (uint32_t card = 0; card < sp->n_cards; card++) {
        sp->cards[card].clk_src = -1;
        sp->cards[card].clk_flags = -1;
        sp->cards[card].trig_mode = -1;
        sp->cards[card].gap_mode = -1;
    }
    /* The box's channels are shared out over its cards, the first cards taking any remainder;
     * the channels in use fill the cards in order, so they are numbered across the cards. */
    uint32_t left = sp->nch;
    for (uint32_t card = 0; card < sp->n_cards; card++) {
        uint32_t fitted = p.n_channels / sp->n_cards + (card < p.n_channels % sp->n_cards);
        sp->card_nch[card] = left < fitted ? left : fitted;
        left -= sp->card_nch[card];
    }
    sp->sync_mode = -1;

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&sp->mu, NULL);

    pthread_mutex_lock(&g_paths_mu);
    int path = -1;
    for (int i = 0; i < XSP3_MAX_PATH; i++) {
        if (!g_paths[i]) {
            path = i;
            break;
        }
    }
    if (path < 0) {
        pthread_mutex_unlock(&g_paths_mu);
        pthread_cond_destroy(&sp->cv);
        pthread_mutex_destroy(&sp->mu);
        free_path(sp);
        set_msg("xsp3_config: all %d paths are in use", XSP3_MAX_PATH);
        return XSP3_INVALID_PATH;
    }
    int rc = pthread_create(&sp->thread, NULL, sim_thread, sp);
    if (rc != 0) {
        pthread_mutex_unlock(&g_paths_mu);
        pthread_cond_destroy(&sp->cv);
        pthread_mutex_destroy(&sp->mu);
        free_path(sp);
        set_msg("xsp3_config: cannot start the acquisition thread: %s", strerror(rc));
        return XSP3_ERROR;
    }
    g_paths[path] = sp;
    pthread_mutex_unlock(&g_paths_mu);
    return path;
}

#if X3S_XSP3_CLOSE_ARGS == 1
int xsp3_close(int path)
#else
int xsp3_close(int path, Xsp3Unlink unlink)
#endif
{
#if X3S_XSP3_CLOSE_ARGS != 1
    /* No shared memory to unlink; but the shim's policy is to always pass Xsp3UnlinkAll. */
    int bad_unlink = unlink != Xsp3UnlinkAll;
#else
    int bad_unlink = 0;
#endif
    struct sim_path *sp = NULL;
    pthread_mutex_lock(&g_paths_mu);
    if (path >= 0 && path < XSP3_MAX_PATH) {
        sp = g_paths[path];
        g_paths[path] = NULL;
    }
    pthread_mutex_unlock(&g_paths_mu);
    if (!sp) {
        set_msg("xsp3_close: invalid path %d", path);
        return XSP3_INVALID_PATH;
    }
    pthread_mutex_lock(&sp->mu);
    sp->quit = 1;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->thread, NULL);
    pthread_cond_destroy(&sp->cv);
    pthread_mutex_destroy(&sp->mu);
    free_path(sp);
    if (bad_unlink) {
#if X3S_XSP3_CLOSE_ARGS != 1
        set_msg("xsp3_close: path %d closed, but the unlink argument was %d, not Xsp3UnlinkAll",
                path, (int)unlink);
#endif
        return XSP3_RANGE_CHECK;
    }
    return XSP3_OK;
}

static const char *box_name(const struct sim_path *sp)
{
    return sp->p.mini_plus ? "Xspress3 Mini Mk2" : sp->p.mini ? "Xspress3 Mini" : "Xspress3";
}

/* The clock a card of this box must be given (card 0 is the master). */
static int fitted_clock(const struct sim_path *sp, uint32_t card)
{
    if (sp->p.mini_plus)
        return XSP4_CLK_SRC_MIDPLN_LMK61E2; /* the Mk2 Mini's clock comes from the midplane */
    if (sp->p.mini)
        return XSP3M_CLK_SRC_CDCM61004;
    return card == 0 ? XSP3_CLK_SRC_XTAL : XSP3_CLK_SRC_EXT; /* followers: the clock LEMO */
}

int xsp3_clocks_setup(int path, int card, int clk_src, int flags, int tp_type)
{
    (void)tp_type;
    struct sim_path *sp = get_path(path, "xsp3_clocks_setup");
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, "xsp3_clocks_setup");
    if (rc < 0)
        return rc;
    uint32_t c0 = card < 0 ? 0 : (uint32_t)card;
    uint32_t c1 = card < 0 ? sp->n_cards : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {
        int want = fitted_clock(sp, c);
        if (clk_src != want && clk_src != XSP3_CLK_SRC_INT) {
            set_msg("xsp3_clocks_setup: card %u: clock source 0x%x is not what this %s card "
                    "uses (0x%x)",
                    c, clk_src, box_name(sp), want);
            return XSP3_RANGE_CHECK;
        }
        if (c > 0 && (flags & XSP3_CLK_FLAGS_MASTER)) {
            set_msg("xsp3_clocks_setup: card %u flagged clock master: card 0 is the master of "
                    "this %u-card system",
                    c, sp->n_cards);
            return XSP3_RANGE_CHECK;
        }
    }
    pthread_mutex_lock(&sp->mu);
    for (uint32_t c = c0; c < c1; c++) {
        sp->cards[c].clk_src = clk_src;
        sp->cards[c].clk_flags = flags;
    }
    pthread_mutex_unlock(&sp->mu);
    /* Xspress3 returns 0; the Mini returns the measured frequency. */
    return sp->p.mini ? (int)X3S_SIM_CLOCK_HZ : XSP3_OK;
}

/*
 * The simulator's settings: the directory must be readable. If it holds a file
 * xsp3_sim_event_widths.txt (whitespace-separated tick counts, one per channel from channel 0),
 * those are the channels' calibrated event widths.
 */
int xsp3_set_sync_mode(int path, int sync_mode, int enb_global_reset, int gr_card)
{
    struct sim_path *sp = get_path(path, "xsp3_set_sync_mode");
    if (!sp)
        return XSP3_INVALID_PATH;
    if ((sync_mode & 0xFF) > XSP3_SYNC_LEMO_DAISYCHAIN_TEE || enb_global_reset < 0 ||
        enb_global_reset > 1 || gr_card < 0 || gr_card >= (int)sp->n_cards) {
        set_msg("xsp3_set_sync_mode: mode %d, global reset %d from card %d: out of range",
                sync_mode, enb_global_reset, gr_card);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    sp->sync_mode = sync_mode;
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_is_xsp3m_plus(int path)
{
    struct sim_path *sp = get_path(path, "xsp3_is_xsp3m_plus");
    if (!sp)
        return XSP3_INVALID_PATH;
    return sp->p.mini_plus ? 1 : 0;
}

int xsp3_sim_get_record(int path, x3s_sim_record *out)
{
    struct sim_path *sp = get_path(path, "xsp3_sim_get_record");
    if (!sp)
        return XSP3_INVALID_PATH;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&sp->mu);
    out->n_cards = sp->n_cards;
    out->n_channels = sp->nch;
    out->sync_mode = sp->sync_mode;
    out->timing_calls = sp->timing_calls;
    out->t_src = sp->timing.t_src;
    out->fixed = sp->timing.fixed;
    out->inv_f0 = sp->timing.inv_f0;
    out->inv_veto = sp->timing.inv_veto;
    out->debounce = sp->timing.debounce;
    out->override_debounce_other = sp->timing.override_debounce_other;
    for (uint32_t c = 0; c < sp->n_cards; c++) {
        const struct sim_card *k = &sp->cards[c];
        x3s_sim_card_record *r = &out->cards[c];
        r->clk_src = k->clk_src;
        r->clk_flags = k->clk_flags;
        r->time_a = k->time_a;
        r->time_fixed = k->time_fixed;
        r->itfg_trig_mode = k->itfg_set ? k->trig_mode : -1;
        r->itfg_gap_mode = k->itfg_set ? k->gap_mode : -1;
        r->itfg_col_time = k->col_time;
        r->itfg_frames = (uint32_t)k->itfg_frames;
        r->run = (uint32_t)k->run;
        r->start_seq = k->start_seq;
    }
    for (uint32_t c = 0; c < sp->nch; c++) {
        memcpy(out->windows[c], sp->win[c], sizeof out->windows[c]);
        out->good_thres[c] = sp->good[c];
    }
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_restore_settings(int path, char *dir, int force_mismatch)
{
    (void)force_mismatch;
    struct sim_path *sp = get_path(path, "xsp3_restore_settings");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (!dir || !dir[0])
        return XSP3_OK;
    if (access(dir, R_OK | X_OK) != 0) {
        set_msg("xsp3_restore_settings: cannot open settings directory %s: %s", dir,
                strerror(errno));
        return XSP3_CANNOT_OPEN_FILE;
    }
    char name[4096];
    int n = snprintf(name, sizeof name, "%s/xsp3_sim_event_widths.txt", dir);
    if (n < 0 || (size_t)n >= sizeof name) {
        set_msg("xsp3_restore_settings: settings path too long: %s", dir);
        return XSP3_RANGE_CHECK;
    }
    FILE *f = fopen(name, "r");
    if (!f)
        return XSP3_OK; /* no event-width calibration: keep the parameters' widths */
    int rc = XSP3_OK;
    for (uint32_t c = 0; c < sp->nch; c++) {
        long w;
        int got = fscanf(f, "%ld", &w);
        if (got == EOF)
            break;
        if (got != 1 || w < 0 || w > 1000) {
            set_msg("xsp3_restore_settings: %s: event width of channel %u is not a tick count "
                    "in 0..1000",
                    name, c);
            rc = XSP3_FILE_READ_FAILED;
            break;
        }
        sp->event_width[c] = (uint32_t)w;
    }
    fclose(f);
    return rc;
}

int xsp3_format_run(int path, int chan, int aux1_mode, int aux1_thres, int aux2_cont, int flags,
                    int aux2_mode, int nbits_eng)
{
    (void)aux1_thres;
    (void)aux2_cont;
    (void)flags;
    struct sim_path *sp = get_path(path, "xsp3_format_run");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan >= (int)sp->nch || nbits_eng != 12 || aux1_mode != 0 || aux2_mode != 0) {
        set_msg("xsp3_format_run: channel %d, %d energy bits, aux modes %d/%d: the simulator "
                "supports 12-bit energy with one aux bin on channels -1..%u",
                chan, nbits_eng, aux1_mode, aux2_mode, sp->nch - 1);
        return XSP3_RANGE_CHECK;
    }
    return (int)sp->num_tf;
}

int xsp3_set_run_flags(int path, int flags)
{
    struct sim_path *sp = get_path(path, "xsp3_set_run_flags");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (flags & (XSP3_RUN_FLAGS_PLAYBACK | XSP3_RUN_FLAGS_SCOPE | XSP3_RUN_FLAGS_DIAG_HIST)) {
        set_msg("xsp3_set_run_flags: flags 0x%x: playback, scope and diagnostic histograms are "
                "not simulated",
                (unsigned)flags);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    sp->run_flags = (uint32_t)flags;
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Information.
 */

int xsp3_get_num_chan(int path)
{
    struct sim_path *sp = get_path(path, "xsp3_get_num_chan");
    return sp ? (int)sp->nch : XSP3_INVALID_PATH;
}

int xsp3_get_num_cards(int path)
{
    struct sim_path *sp = get_path(path, "xsp3_get_num_cards");
    return sp ? (int)sp->n_cards : XSP3_INVALID_PATH;
}

int xsp3_get_num_chan_used(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_get_num_chan_used");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (card < 0 || card >= (int)sp->n_cards) {
        set_msg("xsp3_get_num_chan_used: illegal card %d (system has %u)", card, sp->n_cards);
        return XSP3_ILLEGAL_CARD;
    }
    return (int)sp->card_nch[card];
}

int xsp3_get_bins_per_mca(int path)
{
    struct sim_path *sp = get_path(path, "xsp3_get_bins_per_mca");
    return sp ? (int)X3S_SIM_BINS : XSP3_INVALID_PATH;
}

XspressGeneration xsp3_get_generation(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_get_generation");
    if (!sp)
        return XspressGenError;
    if (check_card(sp, card, "xsp3_get_generation") < 0)
        return XspressGenError;
    return sp->p.mini ? XspressGen3Mini : XspressGen3;
}

int xsp3_get_revision(int path)
{
    struct sim_path *sp = get_path(path, "xsp3_get_revision");
    return sp ? SIM_REVISION : XSP3_INVALID_PATH;
}

double xsp3_get_clock_period(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_get_clock_period");
    if (!sp || check_card(sp, card, "xsp3_get_clock_period") < 0)
        return 0.0;
    return 1.0 / (double)X3S_SIM_CLOCK_HZ;
}

int xsp3_get_trigger_b(int path, int chan, Xspress3_TriggerB *trig_b)
{
    struct sim_path *sp = get_path(path, "xsp3_get_trigger_b");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < 0 || chan >= (int)sp->nch || !trig_b) {
        set_msg("xsp3_get_trigger_b: channel %d outside 0..%u", chan, sp->nch - 1);
        return XSP3_RANGE_CHECK;
    }
    memset(trig_b, 0, sizeof *trig_b);
    trig_b->event_time = (int)sp->event_width[chan];
    return XSP3_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Windows and thresholds.
 */

int xsp3_set_window(int path, int chan, int win, int low, int high)
{
    struct sim_path *sp = get_path(path, "xsp3_set_window");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < 0 || chan >= (int)sp->nch || win < 0 || win > 1 || low < 0 || high < low ||
        high >= (int)X3S_SIM_BINS) {
        set_msg("xsp3_set_window: channel %d window %d [%d, %d]: out of range", chan, win, low,
                high);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    sp->win[chan][2 * win] = (uint32_t)low;
    sp->win[chan][2 * win + 1] = (uint32_t)high;
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_get_window(int path, int chan, int win, uint32_t *low, uint32_t *high)
{
    struct sim_path *sp = get_path(path, "xsp3_get_window");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < 0 || chan >= (int)sp->nch || win < 0 || win > 1 || !low || !high) {
        set_msg("xsp3_get_window: channel %d window %d: out of range", chan, win);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    *low = sp->win[chan][2 * win];
    *high = sp->win[chan][2 * win + 1];
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_get_good_thres(int path, int chan, uint32_t *good_thres)
{
    struct sim_path *sp = get_path(path, "xsp3_get_good_thres");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < 0 || chan >= (int)sp->nch || !good_thres) {
        set_msg("xsp3_get_good_thres: channel %d: out of range", chan);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    *good_thres = sp->good[chan];
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_set_good_thres(int path, int chan, uint32_t good_thres)
{
    struct sim_path *sp = get_path(path, "xsp3_set_good_thres");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < 0 || chan >= (int)sp->nch || good_thres >= X3S_SIM_BINS) {
        set_msg("xsp3_set_good_thres: channel %d threshold %u: out of range", chan, good_thres);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    sp->good[chan] = good_thres;
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Timing and run control.
 */

static int src_simulated(int src)
{
    return src == XSP3_GTIMA_SRC_FIXED || src == XSP3_GTIMA_SRC_INTERNAL ||
           src == XSP3_GTIMA_SRC_TTL_VETO_ONLY || src == XSP3_GTIMA_SRC_TTL_BOTH;
}

/*
 * The simulator's model of the whole-system timing: card 0 takes its frames from t_src, with the
 * inversions and debounce; every other card counts while its veto input is asserted, which card
 * 0 drives (TTL veto only, with override_debounce_other or else the same debounce; the user's
 * inversions apply to the user's signals at card 0, not to that daisy chain).
 */
int xsp3_set_timing(int path, Xsp3Timing *setup)
{
    struct sim_path *sp = get_path(path, "xsp3_set_timing");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (!setup || !src_simulated(setup->t_src) || setup->inv_f0 < 0 || setup->inv_f0 > 1 ||
        setup->inv_veto < 0 || setup->inv_veto > 1 || setup->debounce < 0 ||
        setup->debounce > 255 || setup->override_debounce_other < 0 ||
        setup->override_debounce_other > 255 || setup->loop_io != 0 ||
        setup->card0_a_extra != 0 || setup->cardn_a_extra != 0) {
        set_msg("xsp3_set_timing: source %d, inversions %d/%d, debounce %d/%d, loop_io %d, extra "
                "bits 0x%x/0x%x: out of range or not simulated",
                setup ? setup->t_src : -1, setup ? setup->inv_f0 : -1,
                setup ? setup->inv_veto : -1, setup ? setup->debounce : -1,
                setup ? setup->override_debounce_other : -1, setup ? setup->loop_io : -1,
                setup ? setup->card0_a_extra : 0, setup ? setup->cardn_a_extra : 0);
        return XSP3_RANGE_CHECK;
    }
    int other = setup->override_debounce_other ? setup->override_debounce_other : setup->debounce;
    pthread_mutex_lock(&sp->mu);
    sp->timing = *setup;
    sp->timing_calls++;
    for (uint32_t c = 0; c < sp->n_cards; c++) {
        struct sim_card *k = &sp->cards[c];
        if (c == 0)
            k->time_a = XSP3_GLOB_TIMA_TF_SRC(setup->t_src) |
                        (setup->inv_f0 ? XSP3_GLOB_TIMA_F0_INV : 0u) |
                        (setup->inv_veto ? XSP3_GLOB_TIMA_VETO_INV : 0u) |
                        XSP3_GLOB_TIMA_DEBOUNCE(setup->debounce);
        else
            k->time_a = XSP3_GLOB_TIMA_TF_SRC(XSP3_GTIMA_SRC_TTL_VETO_ONLY) |
                        XSP3_GLOB_TIMA_DEBOUNCE(other);
        k->time_fixed = setup->fixed;
    }
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_itfg_setup(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode)
{
    struct sim_path *sp = get_path(path, "xsp3_itfg_setup");
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, "xsp3_itfg_setup");
    if (rc < 0)
        return rc;
    int mode_ok = trig_mode == XSP3_ITFG_TRIG_MODE_BURST || trig_mode == XSP3_ITFG_TRIG_MODE_SOFTWARE ||
                  trig_mode == XSP3_ITFG_TRIG_MODE_HARDWARE ||
                  trig_mode == XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST ||
                  trig_mode == XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST;
    if (num_tf < 1 || col_time < 1 || !mode_ok || gap_mode < 0 || gap_mode > 3) {
        set_msg("xsp3_itfg_setup: %d frames of %u cycles, trigger mode %d, gap mode %d: out of "
                "range",
                num_tf, col_time, trig_mode, gap_mode);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    uint32_t c0 = card < 0 ? 0 : (uint32_t)card;
    uint32_t c1 = card < 0 ? sp->n_cards : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {
        sp->cards[c].itfg_set = 1;
        sp->cards[c].itfg_frames = (uint64_t)num_tf;
        sp->cards[c].col_time = col_time;
        sp->cards[c].trig_mode = trig_mode;
        sp->cards[c].gap_mode = gap_mode;
    }
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_histogram_clear(int path, int first_chan, int num_chan, int first_frame, int num_frames)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_clear");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (first_chan < 0 || num_chan < 0 || first_chan + num_chan > (int)sp->nch ||
        first_frame < 0 || num_frames < 0 || (int64_t)first_frame + num_frames > (int64_t)sp->num_tf) {
        set_msg("xsp3_histogram_clear: channels %d+%d, frames %d+%d: out of range (%u channels, "
                "%u frames)",
                first_chan, num_chan, first_frame, num_frames, sp->nch, sp->num_tf);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    if (sp->run == RUN_RUNNING) {
        pthread_mutex_unlock(&sp->mu);
        set_msg("xsp3_histogram_clear: the system is running");
        return XSP3_ERROR;
    }
    if (num_chan == (int)sp->nch) {
        for (int f = first_frame; f < first_frame + num_frames; f++) {
            sp->slot_frame[f] = SLOT_EMPTY;
            sp->slot_acks[f] = 0;
        }
    }
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

/* Whether card c (not 0) counts on the veto card 0 drives. */
static int follows_card0(const struct sim_path *sp, uint32_t c)
{
    return XSP3_GLOB_TIMA_TF_SRC(sp->cards[c].time_a) == XSP3_GTIMA_SRC_TTL_VETO_ONLY;
}

/*
 * histogram_start (how = CARD_STARTED) and histogram_arm (CARD_ARMED). Another card than 0 only
 * gets ready: it records once card 0, which times every card, starts; so card 0 (or -1, all
 * cards) begins a new run from frame 0, and then every other card must be running already and
 * following card 0's timing, or its channels would record nothing.
 */
static int begin_run(int path, int card, const char *fn, enum card_run how)
{
    struct sim_path *sp = get_path(path, fn);
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, fn);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sp->mu);
    for (uint32_t c = 1; c < sp->n_cards; c++) {
        if ((card < 0 || (uint32_t)card == c) && !follows_card0(sp, c)) {
            pthread_mutex_unlock(&sp->mu);
            set_msg("%s: card %u does not follow card 0: its time-frame source is %u, not the TTL "
                    "veto card 0 drives (xsp3_set_timing sets that)",
                    fn, c, XSP3_GLOB_TIMA_TF_SRC(sp->cards[c].time_a));
            return XSP3_ERROR;
        }
        if (card == 0 && sp->cards[c].run == CARD_STOPPED) {
            pthread_mutex_unlock(&sp->mu);
            set_msg("%s: card %u is not running: start the other cards before card 0, whose "
                    "timing they follow",
                    fn, c);
            return XSP3_ERROR;
        }
    }
    if (card > 0) {
        sp->cards[card].run = how;
        sp->cards[card].start_seq = ++sp->start_counter;
        pthread_mutex_unlock(&sp->mu);
        return XSP3_OK;
    }
    uint32_t src = XSP3_GLOB_TIMA_TF_SRC(sp->cards[0].time_a);
    if (src == XSP3_GTIMA_SRC_INTERNAL && !sp->cards[0].itfg_set) {
        pthread_mutex_unlock(&sp->mu);
        set_msg("%s: the time-frame source is the ITFG but xsp3_itfg_setup was not called", fn);
        return XSP3_ERROR;
    }
    if (!(sp->run_flags & XSP3_RUN_FLAGS_HIST)) {
        pthread_mutex_unlock(&sp->mu);
        set_msg("%s: run flags 0x%x: histogramming is not enabled", fn, sp->run_flags);
        return XSP3_ERROR;
    }
    uint32_t last = card < 0 ? sp->n_cards : 1;
    for (uint32_t c = 0; c < last; c++) {
        sp->cards[c].run = how;
        sp->cards[c].start_seq = ++sp->start_counter;
    }
    sp->run = RUN_RUNNING;
    sp->t0_ns = mono_ns();
    sp->first_trig = 0;
    sp->cont_pending = 0;
    sp->sw_frames = 0;
    sp->produced = sp->p.frame_base;
    sp->furthest = sp->p.frame_base;
    sp->overrun_count = 0;
    sp->first_overrun = -1;
    sp->err_flags = 0;
    sp->fault_code = 0;
    sp->fault_reported = 0;
    sp->fault_msg[0] = '\0';
    sp->target = src == XSP3_GTIMA_SRC_INTERNAL ? sp->p.frame_base + sp->cards[0].itfg_frames : UNBOUNDED;
    if (src == XSP3_GTIMA_SRC_INTERNAL)
        sp->exposure_ticks = sp->cards[0].col_time;
    else if (sp->p.ext_trigger_hz > 0.0)
        sp->exposure_ticks = (uint32_t)((double)X3S_SIM_CLOCK_HZ / sp->p.ext_trigger_hz);
    else
        sp->exposure_ticks = 0;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_histogram_start(int path, int card)
{
    return begin_run(path, card, "xsp3_histogram_start", CARD_STARTED);
}

int xsp3_histogram_arm(int path, int card)
{
    return begin_run(path, card, "xsp3_histogram_arm", CARD_ARMED);
}

int xsp3_histogram_continue(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_continue");
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, "xsp3_histogram_continue");
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sp->mu);
    if (sp->run == RUN_STOPPED) {
        pthread_mutex_unlock(&sp->mu);
        set_msg("xsp3_histogram_continue: the system is not armed");
        return XSP3_ERROR;
    }
    uint64_t now = mono_ns();
    if (XSP3_GLOB_TIMA_TF_SRC(sp->cards[0].time_a) == XSP3_GTIMA_SRC_INTERNAL &&
        sp->cards[0].trig_mode == XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST) {
        if (!sp->first_trig) {
            sp->first_trig = 1;
            sp->t_first_ns = now;
        }
    } else {
        sp->cont_pending = 1;
    }
    advance(sp, now);
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_histogram_pause(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_pause");
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, "xsp3_histogram_pause");
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sp->mu);
    if (sp->cont_pending) {
        sp->cont_pending = 0;
        sp->sw_frames++;
    }
    advance(sp, mono_ns());
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

int xsp3_histogram_stop(int path, int card)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_stop");
    if (!sp)
        return XSP3_INVALID_PATH;
    int rc = check_card(sp, card, "xsp3_histogram_stop");
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sp->mu);
    advance(sp, mono_ns());
    /* Stopping any card ends the run: the simulator does not model a partly stopped system. */
    sp->run = RUN_STOPPED;
    for (uint32_t c = 0; c < sp->n_cards; c++)
        if (card < 0 || (uint32_t)card == c)
            sp->cards[c].run = CARD_STOPPED;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    return XSP3_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Readout.
 */

int64_t xsp3_scaler_check_progress_details(int path, Xsp3ErrFlag *flags, int quiet,
                                           int64_t *furthest_frame)
{
    (void)quiet;
    struct sim_path *sp = get_path(path, "xsp3_scaler_check_progress_details");
    if (!sp)
        return XSP3_INVALID_PATH;
    pthread_mutex_lock(&sp->mu);
    advance(sp, mono_ns());
    if (flags)
        *flags = (Xsp3ErrFlag)sp->err_flags;
    if (furthest_frame)
        *furthest_frame = (int64_t)sp->furthest;
    int64_t rc = (int64_t)sp->produced;
    if (sp->fault_code != 0 && !sp->fault_reported) {
        /* The first query after a fault fails with its message; later ones return the frames
         * completed before it, with the error flags still set. */
        sp->fault_reported = 1;
        rc = sp->fault_code;
        set_msg("%s", sp->fault_msg);
    }
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

int64_t xsp3_histogram_get_circ_overrun(int path, int chan, int64_t *first)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_get_circ_overrun");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan < -1 || chan >= (int)sp->nch) {
        set_msg("xsp3_histogram_get_circ_overrun: channel %d outside -1..%u", chan, sp->nch - 1);
        return XSP3_RANGE_CHECK;
    }
    pthread_mutex_lock(&sp->mu);
    int64_t n = (int64_t)sp->overrun_count;
    if (first)
        *first = sp->first_overrun;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

/* The frame in the slot that read address tf maps to (SLOT_EMPTY if none). */
static uint64_t occupant(struct sim_path *sp, unsigned tf)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t f = sp->slot_frame[x3s_sdk_slot(tf, sp->num_tf)];
    pthread_mutex_unlock(&sp->mu);
    return f;
}

int xsp3_histogram_read4d(int path, uint32_t *buffer, unsigned eng, unsigned aux, unsigned chan,
                          unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan,
                          unsigned num_tf)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_read4d");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (!buffer || aux != 0 || num_aux != 1 || eng >= X3S_SIM_BINS || num_eng > X3S_SIM_BINS - eng ||
        chan >= sp->nch || num_chan > sp->nch - chan || num_tf > sp->num_tf) {
        set_msg("xsp3_histogram_read4d: energy %u+%u, aux %u+%u, channel %u+%u, frame %u+%u: out "
                "of range (%u bins, 1 aux, %u channels, %u frames)",
                eng, num_eng, aux, num_aux, chan, num_chan, tf, num_tf, X3S_SIM_BINS, sp->nch,
                sp->num_tf);
        return XSP3_RANGE_CHECK;
    }
    uint32_t tmp[X3S_SIM_BINS];
    int whole = eng == 0 && num_eng == X3S_SIM_BINS;
    for (unsigned t = 0; t < num_tf; t++) {
        uint64_t f = occupant(sp, tf + t);
        for (unsigned c = 0; c < num_chan; c++) {
            uint32_t *dst = buffer + ((size_t)t * num_chan + c) * num_eng;
            if (f == SLOT_EMPTY) {
                memset(dst, 0, sizeof *dst * num_eng);
            } else if (whole) {
                x3s_sim_gen_mca(&sp->p, sp->table, f, chan + c, dst);
            } else {
                x3s_sim_gen_mca(&sp->p, sp->table, f, chan + c, tmp);
                memcpy(dst, tmp + eng, sizeof *dst * num_eng);
            }
        }
    }
    return XSP3_OK;
}

int xsp3_scaler_read(int path, uint32_t *dest, unsigned scaler, unsigned chan, unsigned t,
                     unsigned n_scalers, unsigned n_chan, unsigned dt)
{
    struct sim_path *sp = get_path(path, "xsp3_scaler_read");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (!dest || scaler >= XSP3_SW_NUM_SCALERS || n_scalers > XSP3_SW_NUM_SCALERS - scaler ||
        chan >= sp->nch || n_chan > sp->nch - chan || dt > sp->num_tf) {
        set_msg("xsp3_scaler_read: scaler %u+%u, channel %u+%u, frame %u+%u: out of range (9 "
                "scalers, %u channels, %u frames)",
                scaler, n_scalers, chan, n_chan, t, dt, sp->nch, sp->num_tf);
        return XSP3_RANGE_CHECK;
    }
    uint32_t mca[X3S_SIM_BINS];
    uint32_t sc[XSP3_SW_NUM_SCALERS];
    int pattern = sp->p.content == X3S_SIM_PATTERN;
    for (unsigned i = 0; i < dt; i++) {
        pthread_mutex_lock(&sp->mu);
        uint64_t f = sp->slot_frame[x3s_sdk_slot((uint32_t)(t + i), sp->num_tf)];
        uint32_t exposure = sp->exposure_ticks;
        pthread_mutex_unlock(&sp->mu);
        for (unsigned c = 0; c < n_chan; c++) {
            uint32_t *dst = dest + ((size_t)i * n_chan + c) * n_scalers;
            if (f == SLOT_EMPTY) {
                memset(dst, 0, sizeof *dst * n_scalers);
                continue;
            }
            /* Windows and thresholds only change while stopped (the shim enforces it). */
            uint32_t win[4];
            memcpy(win, sp->win[chan + c], sizeof win);
            uint32_t good = sp->good[chan + c];
            if (!pattern)
                x3s_sim_gen_mca(&sp->p, sp->table, f, chan + c, mca);
            x3s_sim_gen_scalers(&sp->p, f, chan + c, exposure, win, good, pattern ? NULL : mca, sc);
            memcpy(dst, sc + scaler, sizeof *dst * n_scalers);
        }
    }
    return XSP3_OK;
}

int xsp3_histogram_circ_ack(int path, unsigned chan, unsigned tf, unsigned num_chan,
                            unsigned num_tf)
{
    struct sim_path *sp = get_path(path, "xsp3_histogram_circ_ack");
    if (!sp)
        return XSP3_INVALID_PATH;
    if (chan >= sp->nch || num_chan > sp->nch - chan || num_tf > sp->num_tf) {
        set_msg("xsp3_histogram_circ_ack: channel %u+%u, frame %u+%u: out of range (%u channels, "
                "%u frames)",
                chan, num_chan, tf, num_tf, sp->nch, sp->num_tf);
        return XSP3_RANGE_CHECK;
    }
    int rc = XSP3_OK;
    pthread_mutex_lock(&sp->mu);
    for (unsigned i = 0; i < num_tf; i++) {
        unsigned f = tf + i;
        uint64_t slot = x3s_sdk_slot(f, sp->num_tf);
        /* Only the frame that occupies the slot (low 32 bits of its number) is acknowledged. */
        if (sp->slot_frame[slot] == SLOT_EMPTY || (unsigned)sp->slot_frame[slot] != f)
            continue;
        if (sp->slot_acks[slot] + num_chan > sp->nch) {
            if (sp->p.mini) {
                set_msg("xsp3_histogram_circ_ack (Mini): frame %u acknowledged twice", f);
                rc = XSP3_ERROR;
                break;
            }
            sp->slot_acks[slot] = sp->nch;
        } else {
            sp->slot_acks[slot] += num_chan;
        }
    }
    if (sp->p.full_speed)
        pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    return rc;
}
