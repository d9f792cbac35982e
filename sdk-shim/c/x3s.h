/*
 * x3s.h: the shim's small, stable C API over the Xspress3 SDK. The only header Rust binds.
 *
 * Conventions
 *  - Every call returns int32_t: >= 0 is success (some calls return a count), < 0 an error.
 *    Codes 0..-20 keep their XSP3 meaning (XSP3_RANGE_CHECK = -6, ...); shim codes start at -100.
 *  - Buffers are owned by the caller. Nothing is allocated after x3s_arm.
 *  - Reads copy frames [first, first + n) of all channels in the SDK layouts:
 *      MCA     [frame][chan][bin]     u32 (xsp3_histogram_read4d with one aux bin)
 *      scalers [frame][chan][scaler]  u32 (xsp3_scaler_read, 9 scalers in SDK order)
 *  - The text of a device's last error is captured at failure time and read with x3s_last_error.
 *  - A device handle is used by one thread at a time; only x3s_last_error may be called from
 *    another thread concurrently. Different handles may be used from different threads.
 */
#ifndef X3S_H
#define X3S_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define X3S_ABI_MAJOR 2
#define X3S_ABI_MINOR 2

/* ---- Shim error codes (the XSP3 codes 0..-20 pass through unchanged). ---- */
#define X3S_OK 0
#define X3S_E_STATE (-100)     /* call not valid in the current state */
#define X3S_E_ARG (-101)       /* invalid argument */
#define X3S_E_BUFSIZE (-102)   /* destination too small */
#define X3S_E_NOT_READY (-103) /* frame not yet complete */
#define X3S_E_OVERRUN (-104)   /* frame overwritten in the circular buffer before it was read */
#define X3S_E_TIMEOUT (-105)   /* progress stalled past the configured timeout */
#define X3S_E_BACKEND (-106)   /* SDK unavailable or ABI mismatch */

/* ---- Limits. ---- */
#define X3S_MAX_CHANNELS 256
#define X3S_MAX_CARDS 16
#define X3S_MAX_ROIS 32 /* software ROIs (acq-core's MAX_ROIS) */
#define X3S_MAX_EVENT_WIDTH 1000 /* clock ticks (12.5 us at 80 MHz) */
#define X3S_N_SCALERS 9
#define X3S_MAX_MSG 512

/* ---- Trigger modes (x3s_acq_params.trigger); same order as acq_core::TriggerMode. ---- */
#define X3S_TRIG_INTERNAL 0       /* ITFG burst from arm */
#define X3S_TRIG_SOFTWARE 1       /* one frame per x3s_soft_trigger */
#define X3S_TRIG_SOFTWARE_FIRST 2 /* first frame on a software trigger, then back to back */
#define X3S_TRIG_EXTERNAL 3       /* one frame per TTL edge */
#define X3S_TRIG_EXTERNAL_FIRST 4 /* first frame on a TTL edge, then back to back */
#define X3S_TRIG_GATE 5           /* TTL veto gates counting; each gate is one frame */

/* ---- Device states (x3s_progress.state). ---- */
#define X3S_STATE_IDLE 0
#define X3S_STATE_ARMED 1
#define X3S_STATE_RUNNING 2
#define X3S_STATE_DONE 3
#define X3S_STATE_FAULT 4

/* ---- Simulator content modes. ---- */
#define X3S_SIM_SPECTRUM 0 /* fluorescence peaks on a background, Poisson-like noise */
#define X3S_SIM_PATTERN 1  /* cheap word pattern, for benchmarks */

/* Sentinel for "no such frame" in the fault-injection fields. */
#define X3S_SIM_NEVER (-1)

/*
 * Parameters of the simulated SDK. Ignored when the shim is built against the real SDK.
 * x3s_sim_default_params fills the defaults given in brackets. The content formula is in
 * docs/sdk-sim.md.
 */
typedef struct x3s_sim_params {
    uint64_t seed;              /* [1] content seed */
    uint32_t n_channels;        /* [4] channels of the simulated box, 1..256 */
    uint32_t content;           /* [X3S_SIM_SPECTRUM] or X3S_SIM_PATTERN */
    uint32_t full_speed;        /* [0] 1: timed frames complete as fast as free slots allow */
    uint32_t mini;              /* [0] 1: Xspress3 Mini: an overrun stops with an error */
    uint32_t mini_plus;         /* [0] 1 (with mini): second-generation Mini (Mk2): it needs
                                   the midplane clock and midplane sync */
    uint64_t frame_base;        /* [0] test knob: each run's first frame number (e.g. near 2^32,
                                   to test the frame addressing without 2^32 frames) */
    double ext_trigger_hz;      /* [0] rate of TTL triggers / gates; 0: none arrive */
    uint32_t background;        /* [2] mean background counts per bin */
    uint32_t amplitude_percent; /* [100] peak height scale */
    uint32_t pileup_ppm;        /* [2000] PileUp = total events * ppm / 1e6 */
    uint32_t reset_rate_hz;     /* [1000] detector resets per second of exposure */
    uint32_t reset_ticks;       /* [200] clock ticks each reset lasts */
    uint32_t event_width;       /* [6] event width of channel c is event_width + c % 4 */
    /* Fault injection. */
    uint32_t fail_open;         /* [0] 1: xsp3_config fails with XSP3_ERR_DEV_NOT_FOUND */
    int64_t error_at_frame;     /* [-1] the SDK reports an error when it reaches this frame */
    int32_t error_code;         /* [XSP3_ERROR] the code of that error */
    int64_t stall_at_frame;     /* [-1] the progress counter stops at this frame */
    double slow_rx_hz;          /* [0] RX completes at most this many frames/s; falling more than
                                   16 frames behind the detector is a descriptor overrun */
} x3s_sim_params;

/* What x3s_open needs. */
typedef struct x3s_open_params {
    int32_t n_cards;              /* 1 */
    int32_t n_channels;           /* -1: all channels of the system */
    int32_t num_tf;               /* SDK circular-buffer depth in frames (e.g. 16384) */
    const char *base_ip;          /* NULL: SDK default addressing */
    const char *settings_dir;     /* NULL: keep the SDK's current settings */
    int32_t debug;                /* SDK debug level, -1: default */
    uint32_t progress_timeout_ms; /* 0: off. Otherwise x3s_poll fails with X3S_E_TIMEOUT when the
                                     detector is ahead of frames_complete and frames_complete has
                                     not moved for this long */
    x3s_sim_params sim;
} x3s_open_params;

/*
 * Static facts about an opened device. A multi-card system's channels are numbered across its
 * cards: card 0's first, then card 1's, ... (card_channels). Card 0 is the clock and timing
 * master; the other cards follow it.
 */
typedef struct x3s_info {
    uint32_t n_channels;
    uint32_t n_bins;
    uint32_t n_scalers;
    int32_t generation; /* XspressGeneration: 0 Xspress3, 2 Mini, 3 Xspress4 */
    int32_t revision;
    uint32_t simulated; /* 1 when the simulated SDK is behind the shim */
    uint32_t mini_plus; /* 1: second-generation Mini (Mk2, xsp3_is_xsp3m_plus), midplane clock */
    double clock_hz;
    uint64_t ring_frames; /* frames the SDK circular buffer holds */
    uint32_t n_cards;
    uint32_t card_channels[X3S_MAX_CARDS]; /* channels of each card */
    /* Per channel, in clock ticks: the event width dead-time correction uses (the calibrated
     * one unless x3s_set_event_width overrode it). */
    uint32_t event_widths[X3S_MAX_CHANNELS];
} x3s_info;

/* A channel's settings as they stand (read back from the SDK at x3s_open, then as set). */
typedef struct x3s_chan_settings {
    uint32_t window_low[2];  /* in-window scalers 0 and 1, inclusive bins */
    uint32_t window_high[2];
    uint32_t good_threshold; /* AllGood counts events in bins >= this */
    uint32_t event_width;    /* in effect for dead-time correction, clock ticks */
    uint32_t event_width_calibrated; /* from the SDK's calibration (xsp3_get_trigger_b) */
} x3s_chan_settings;

/* One acquisition. */
typedef struct x3s_acq_params {
    uint64_t n_frames;       /* 0: unbounded (until x3s_stop) */
    uint32_t exposure_ticks; /* per frame, clock ticks; >= 1 */
    uint32_t gap_mode;       /* XSP3_ITFG_GAP_MODE_*: 0..3 */
    uint32_t trigger;        /* X3S_TRIG_* */
    uint32_t debounce_ticks; /* trigger-input debounce, 0..255 clock ticks */
    uint32_t invert_f0;      /* 1: the frame-zero input is active low */
    uint32_t invert_veto;    /* 1: the veto / gate input is active low */
} x3s_acq_params;

/* Result of x3s_poll. */
typedef struct x3s_progress {
    uint64_t frames_complete; /* frames [0, frames_complete) are complete and readable */
    uint64_t furthest_frame;  /* frames the detector reached, ignoring RX lag */
    uint64_t overrun_count;   /* frames overwritten before they were released */
    int64_t first_overrun;    /* first overwritten frame, -1: none */
    uint32_t err_flags;       /* Xsp3ErrFlag bits */
    uint32_t state;           /* X3S_STATE_* */
} x3s_progress;

typedef struct x3s_dev x3s_dev;

/* (X3S_ABI_MAJOR << 16) | X3S_ABI_MINOR of the compiled library. */
uint32_t x3s_abi_version(void);
/* Defaults for open (1 card, all channels, 16384 frames, no timeout) and the simulator. */
void x3s_default_open_params(x3s_open_params *p);
void x3s_sim_default_params(x3s_sim_params *p);

/*
 * Connects and prepares the system. On failure *out is NULL and the message is available from
 * x3s_last_error(NULL, ...) on the same thread.
 */
int32_t x3s_open(const x3s_open_params *p, x3s_dev **out);
int32_t x3s_get_info(x3s_dev *d, x3s_info *out);
/* Window win (0 or 1) of channel chan (-1: all), inclusive bin limits. Not while armed. */
int32_t x3s_set_window(x3s_dev *d, int32_t chan, uint32_t win, uint32_t low, uint32_t high);
/* AllGood counts events in bins >= thr. chan -1: all. Not while armed. */
int32_t x3s_set_good_threshold(x3s_dev *d, int32_t chan, uint32_t thr);
/*
 * The event width (clock ticks, <= X3S_MAX_EVENT_WIDTH) that dead-time correction uses for chan
 * (-1: all), overriding the calibrated one, as MAX IV's EventWidths property does. It is a
 * parameter of the correction, not written to the detector: the SDK's trigger settings (and so
 * what the hardware counts) stay as calibrated. Not while armed.
 */
int32_t x3s_set_event_width(x3s_dev *d, int32_t chan, uint32_t ticks);
/* The settings of channel chan. */
int32_t x3s_get_chan_settings(x3s_dev *d, uint32_t chan, x3s_chan_settings *out);
/*
 * What x3s_read_mca returns of each spectrum: the n_bins detector bins from first_bin (read from
 * the SDK as that range alone, or with the x3s_set_rois bins), summed in groups of rebin adjacent
 * bins; n_bins % rebin == 0. x3s_read_mca then copies n_channels * n_bins / rebin words per
 * frame. Default (and 0, n_bins, 1): the whole spectrum. With rebin > 1 (or ROIs beyond the
 * recorded bins) this allocates a read buffer of at most 4 MiB here; nothing after x3s_arm. Not
 * while armed.
 */
int32_t x3s_set_recording(x3s_dev *d, uint32_t first_bin, uint32_t n_bins, uint32_t rebin);
/*
 * Software ROIs that x3s_read_mca_rois sums per frame and channel from the full spectrum, before
 * x3s_set_recording's reduction: anywhere in the spectrum, inside, outside or across the recorded
 * bins. ranges holds n_rois * n_channels pairs [low, high] of detector bins, [roi][chan]; a pair
 * with low > high gives that channel no range (its sum is 0). At most X3S_MAX_ROIS; 0 removes
 * them. The SDK is then read over the bins that the recording and the ROIs span together; when
 * that is more than the recorded bins, or with rebin > 1, through a read buffer of at most 4 MiB
 * allocated here (nothing after x3s_arm). Not while armed.
 */
int32_t x3s_set_rois(x3s_dev *d, uint32_t n_rois, const uint32_t *ranges);
/* Validates and stores the next acquisition. Nothing starts.
 * X3S_E_STATE while armed or running; X3S_E_ARG for values out of range. */
int32_t x3s_configure(x3s_dev *d, const x3s_acq_params *a);
/* Starts (internal, external, gate) or arms (software) the configured acquisition; progress
 * restarts at 0. X3S_E_STATE if not configured or already armed. Allocates nothing, nor does any
 * call after it. SDK: histogram_stop, histogram_clear, itfg_setup on card 0 (not for gate),
 * set_timing (card 0 the source, the other cards following it), histogram_start of cards
 * 1..n-1, then histogram_start or (software) histogram_arm of card 0. */
int32_t x3s_arm(x3s_dev *d);
/* One software frame. Software modes only, while armed or running. */
int32_t x3s_soft_trigger(x3s_dev *d);
/* Non-blocking progress check. Fails (and enters X3S_STATE_FAULT, sticky: later polls return
 * the same code and text) on an SDK error, on SDK error flags other than the circular-buffer
 * overrun flags, or on the stall watchdog (X3S_E_TIMEOUT). Overruns are reported, not failed. */
int32_t x3s_poll(x3s_dev *d, x3s_progress *out);
/*
 * Copies frames [first, first + n) of all channels into dst (dst_words u32), the spectra as
 * x3s_set_recording reduces them. Returns n.
 *  X3S_E_STATE     nothing armed yet
 *  X3S_E_NOT_READY first + n > frames_complete
 *  X3S_E_OVERRUN   frame `first` was overwritten in the SDK buffer before the copy, or the last
 *                  frame during it (the whole copy may be torn). Frames at the front that the
 *                  SDK overwrote while the rest was copied are NOT refused: after the read, poll
 *                  and drop the frames below the oldest intact one (frames_complete minus the
 *                  buffer depth), as acq-core's engine does, so a reader one buffer behind keeps
 *                  the intact tail of each read and catches up
 *  X3S_E_BUFSIZE   dst_words < n * n_channels * n_bins (n_channels * 9 for scalers)
 *  X3S_E_ARG       n > ring_frames, or first + n overflows
 */
int32_t x3s_read_mca(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst, size_t dst_words);
/*
 * x3s_read_mca, and the sums of the x3s_set_rois ROIs of each frame into rois (roi_words u64,
 * n * n_rois * n_channels of them, [frame][roi][chan]), computed from each spectrum as it is
 * read. The same errors; X3S_E_BUFSIZE also for roi_words too small.
 */
int32_t x3s_read_mca_rois(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst, size_t dst_words,
                          uint64_t *rois, size_t roi_words);
int32_t x3s_read_scalers(x3s_dev *d, uint64_t first, uint32_t n, uint32_t *dst,
                         size_t dst_words);
/* Gives frames [first, first + n) back to the SDK's circular buffer (xsp3_histogram_circ_ack;
 * mandatory on the Mini). Frames already overwritten are ignored. X3S_E_NOT_READY beyond
 * frames_complete. */
int32_t x3s_release(x3s_dev *d, uint64_t first, uint32_t n);
/* Stops the acquisition; completed frames stay readable. Idempotent. */
int32_t x3s_stop(x3s_dev *d);
/* Stops, disconnects and frees the handle. d may be NULL. */
int32_t x3s_close(x3s_dev *d);
/*
 * Copies the text of the last error of d (of the calling thread's last failed x3s_open when d is
 * NULL) into buf, NUL-terminated and truncated to len. Returns the last error code (0: none).
 */
int32_t x3s_last_error(x3s_dev *d, char *buf, size_t len);
/* Static name of any code: "XSP3_OK", "XSP3_RANGE_CHECK", "X3S_E_OVERRUN", ... */
const char *x3s_strerror(int32_t code);

/*
 * The simulator's deterministic content, without a device: frame `frame` of channels
 * [0, n_channels) as the simulated SDK returns it.
 *  windows:    [n_channels][2][2] u32 (low, high of window 0 then window 1), NULL: 0..4095
 *  good_thres: [n_channels] u32, NULL: 0
 *  mca:        >= n_channels * 4096 words, or NULL
 *  scalers:    >= n_channels * 9 words, or NULL
 * Returns 0, or X3S_E_ARG / X3S_E_BUFSIZE.
 */
/* What the simulated SDK was given, per card and per channel (x3s_sim_get_record). */
typedef struct x3s_sim_card_record {
    int32_t clk_src;   /* xsp3_clocks_setup's source; -1: never called */
    int32_t clk_flags;
    uint32_t time_a;   /* global timing register A as xsp3_set_timing left it */
    uint32_t time_fixed;
    int32_t itfg_trig_mode; /* xsp3_itfg_setup; -1: never called */
    int32_t itfg_gap_mode;
    uint32_t itfg_col_time;
    uint32_t itfg_frames;
    uint32_t run;       /* 0 stopped, 1 started (histogram_start), 2 armed (histogram_arm) */
    uint32_t start_seq; /* order of the card's last start or arm among all cards' (1, 2, ...) */
} x3s_sim_card_record;

typedef struct x3s_sim_record {
    uint32_t n_cards;
    uint32_t n_channels;
    int32_t sync_mode;     /* xsp3_set_sync_mode; -1: never called */
    uint32_t timing_calls; /* xsp3_set_timing calls; the last one's fields follow */
    int32_t t_src;
    uint32_t fixed;
    int32_t inv_f0;
    int32_t inv_veto;
    int32_t debounce;
    int32_t override_debounce_other;
    x3s_sim_card_record cards[X3S_MAX_CARDS];
    uint32_t windows[X3S_MAX_CHANNELS][4]; /* low0, high0, low1, high1 */
    uint32_t good_thres[X3S_MAX_CHANNELS];
} x3s_sim_record;

/* Copies what the simulated SDK behind d was given. X3S_E_BACKEND over the real SDK. */
int32_t x3s_sim_get_record(x3s_dev *d, x3s_sim_record *out);

int32_t x3s_sim_expected_frame(const x3s_sim_params *sim, uint32_t n_channels,
                               uint32_t exposure_ticks, const uint32_t *windows,
                               const uint32_t *good_thres, uint64_t frame, uint32_t *mca,
                               size_t mca_words, uint32_t *scalers, size_t scaler_words);

#ifdef __cplusplus
}
#endif

#endif /* X3S_H */
