/*
 * xsp3_api.h: our own declarations of the subset of the Quantum Detectors Xspress3 SDK
 * (libxspress3, prefix xsp3_) that the x3s shim calls.
 *
 * Written from the documented facts (API manual v2.2.0 and the public integrations; see
 * shared/reference/xspress3.md sections 2.2-2.6). No vendor header text is reproduced here.
 * Two builds use this file:
 *   - the default build, where xsp3_sim.c implements every function below;
 *   - the check that x3s.c compiles with -Wall -Wextra -Werror against these declarations.
 * With XSPRESS3_SDK_DIR set, x3s.c includes the vendor's xspress3.h instead and this file is unused.
 *
 * Names: where a name below is the vendor's, it has the vendor's meaning and value. Names that
 * are the project's own, or whose value differs between SDK generations, are marked "(ours)".
 *
 * Version skew the shim isolates (build.rs detects it from the vendor header):
 *   X3S_XSP3_CLOSE_ARGS   1: xsp3_close(path); 2: xsp3_close(path, Xsp3Unlink)   (default 2)
 *   xsp3_is_xsp3m_plus    declared from the 2024-05 SDK on; the shim references it weakly.
 */
#ifndef X3S_XSP3_API_H
#define X3S_XSP3_API_H

#include <stdint.h>

#ifndef X3S_XSP3_CLOSE_ARGS
#define X3S_XSP3_CLOSE_ARGS 2
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Return codes: >= 0 is success (several calls return a count or a frequency). ---- */
#define XSP3_OK 0
#define XSP3_ERROR (-1)
#define XSP3_INVALID_PATH (-2)
#define XSP3_ILLEGAL_CARD (-3)
#define XSP3_ILLEGAL_SUBPATH (-4)
#define XSP3_INVALID_DMA_STREAM (-5)
#define XSP3_RANGE_CHECK (-6)
#define XSP3_INVALID_SCOPE_MOD (-7)
#define XSP3_OUT_OF_MEMORY (-8)
#define XSP3_ERR_DEV_NOT_FOUND (-9)
#define XSP3_CANNOT_OPEN_FILE (-10)
#define XSP3_FILE_READ_FAILED (-11)
#define XSP3_FILE_WRITE_FAILED (-12)
#define XSP3_FILE_RENAME_FAILED (-13)
#define XSP3_LOG_FILE_MISSING (-14)
#define XSP3_WOULD_BLOCK (-20)

/*
 * ---- Sizes and limits. ----
 * (ours) XSP3_MAX_*: the simulator's limits. The vendor's values vary by generation: MAX_PATH is
 * 20 in the 2021 SDKs and 34 from 2023; MAX_CARDS is 18 in the 2021-11/12 SDKs, 16 otherwise.
 * The shim itself uses none of them (its own limits are X3S_* in x3s.h).
 */
#define XSP3_MAX_PATH 34
#define XSP3_MAX_CARDS 16
#define XSP3_MAX_CHANS_PER_CARD 16
#define XSP3_MAX_CHANS 256
#define XSP3_MAX_MSG_LEN 1024
#define XSP3_BINS_PER_MCA 4096
#define XSP3_SW_NUM_SCALERS 9

/*
 * ---- Scaler indices, in the order xsp3_scaler_read returns them per channel. ----
 * These are the vendor's XSP_SW_SCALER_* names. The vendor's XSP3_SCALER_* names stop at PILEUP
 * (there is no vendor XSP3_SCALER_TOTALTICKS), and its XSP3_SOFT_SCALER_* indices are a different,
 * internal order: never use them for xsp3_scaler_read data.
 */
#define XSP_SW_SCALER_LIVE_TICKS 0
#define XSP_SW_SCALER_RESET_TICKS 1
#define XSP_SW_SCALER_NUM_RESETS 2
#define XSP_SW_SCALER_ALL_EVENT 3
#define XSP_SW_SCALER_ALL_GOOD 4
#define XSP_SW_SCALER_IN_WINDOW0 5
#define XSP_SW_SCALER_IN_WINDOW1 6
#define XSP_SW_SCALER_PILEUP 7
#define XSP_SW_SCALER_TOTAL_TICKS 8

/* ---- Run flags (xsp3_set_run_flags). ---- */
#define XSP3_RUN_FLAGS_PLAYBACK 0x1
#define XSP3_RUN_FLAGS_SCOPE 0x2
#define XSP3_RUN_FLAGS_SCALERS 0x4
#define XSP3_RUN_FLAGS_HIST 0x8
#define XSP3_RUN_FLAGS_DIAG_HIST 0x10
#define XSP3_RUN_FLAGS_CIRCULAR_BUFFER 0x100

/* ---- Clock sources and flags (xsp3_clocks_setup). ---- */
#define XSP3_CLK_SRC_INT 0
#define XSP3_CLK_SRC_XTAL 1
#define XSP3_CLK_SRC_EXT 2
#define XSP3_CLK_SRC_FPGA 3
#define XSP3M_CLK_SRC_CDCM61004 0x10
#define XSP3M_CLK_SRC_LMK61E2 0x11
#define XSP4_CLK_SRC_MIDPLN_CDCM61004 0x20
#define XSP4_CLK_SRC_MIDPLN_LMK61E2 0x21 /* the Mk2 Mini's clock */
#define XSP3_CLK_FLAGS_MASTER (1 << 0)
#define XSP3_CLK_FLAGS_NO_DITHER (1 << 1)

/* ---- Box-to-box synchronisation (xsp3_set_sync_mode); the mode is in bits 0..7. ---- */
#define XSP3_SYNC_MODE(x) ((x) & 0xFF)
#define XSP3_SYNC_NONE 0
#define XSP3_SYNC_LEMO_RADIAL 1
#define XSP3_SYNC_LEMO_DAISYCHAIN 2
#define XSP3_SYNC_IDC 3
#define XSP3_SYNC_MIDPLANE 4
#define XSP3_SYNC_LEMO_DAISYCHAIN_TEE 5

/* ---- Global timing register A of each card (set through xsp3_set_timing). ---- */
#define XSP3_GLOB_TIMA_TF_SRC(x) ((uint32_t)(x) & 7u)
#define XSP3_GTIMA_SRC_FIXED 0
#define XSP3_GTIMA_SRC_SOFTWARE 0
#define XSP3_GTIMA_SRC_INTERNAL 1
#define XSP3_GTIMA_SRC_SWENB_HWMARKER 2
#define XSP3_GTIMA_SRC_IDC 3
#define XSP3_GTIMA_SRC_TTL_VETO_ONLY 4
#define XSP3_GTIMA_SRC_TTL_BOTH 5
#define XSP3_GTIMA_SRC_LVDS_VETO_ONLY 6
#define XSP3_GTIMA_SRC_LVDS_BOTH 7
#define XSP3_GLOB_TIMA_F0_INV (1u << 3)
#define XSP3_GLOB_TIMA_VETO_INV (1u << 4)
#define XSP3_GLOB_TIMA_DEBOUNCE(x) (((uint32_t)(x) & 0xFFu) << 16)

/* ---- Internal time-frame generator (xsp3_itfg_setup). ---- */
#define XSP3_ITFG_TRIG_MODE_BURST 0
#define XSP3_ITFG_TRIG_MODE_SOFTWARE 1
#define XSP3_ITFG_TRIG_MODE_HARDWARE 2
#define XSP3_ITFG_TRIG_MODE_PB0GLOB_RESET 3
#define XSP3_ITFG_TRIG_MODE_SOFTWARE_ONLY_FIRST 5
#define XSP3_ITFG_TRIG_MODE_HARDWARE_ONLY_FIRST 6
#define XSP3_ITFG_GAP_MODE_25NS 0
#define XSP3_ITFG_GAP_MODE_200NS 1
#define XSP3_ITFG_GAP_MODE_500NS 2
#define XSP3_ITFG_GAP_MODE_1US 3

/* ---- Hardware generations (xsp3_get_generation). ---- */
typedef enum {
    XspressGenError = -1,
    XspressGen3 = 0,
    XspressGen3V7 = 1,
    XspressGen3Mini = 2,
    XspressGen4 = 3
} XspressGeneration;

/* ---- Error flags (xsp3_scaler_check_progress_details). ---- */
typedef enum {
    Xsp3ErrFlag_Playback = 0x1,
    Xsp3ErrFlag_Scope = 0x2,
    Xsp3ErrFlag_HistFramesOverRun = 0x4,
    Xsp3ErrFlag_HistFramesMissing = 0x8,
    Xsp3ErrFlag_ScalarOverRun = 0x10,
    Xsp3ErrFlag_ScalarMissing = 0x20,
    Xsp3ErrFlag_DiagHistOverRun = 0x40,
    Xsp3ErrFlag_DescOverrun = 0x200,
    Xsp3ErrFlag_TFMismatch = 0x400,
    Xsp3ErrFlag_DescSofEof = 0x800,
    Xsp3ErrFlag_DescCount = 0x1000,
    Xsp3ErrFlag_SocketError = 0x2000,
    Xsp3ErrFlag_CircBuffOverRun = 0x10000,
    Xsp3ErrFlag_DescOverrunScalars = 0x20000,
    Xsp3ErrFlag_TFMismatchScalars = 0x40000,
    Xsp3ErrFlag_DescSofEofScalars = 0x80000,
    Xsp3ErrFlag_DescCountScalars = 0x100000,
    Xsp3ErrFlag_SocketErrorScalars = 0x200000,
    Xsp3ErrFlag_CircBuffOverRunScalars = 0x1000000
} Xsp3ErrFlag;

/*
 * Time framing of a whole system (xsp3_set_timing): the source of card 0's frames and its inputs'
 * polarity and debounce; the library sets the other cards to follow card 0. Field order and types
 * are the SDK's (the same in every generation since 2021).
 */
typedef struct {
    int t_src;                   /* XSP3_GTIMA_SRC_* of card 0 */
    uint32_t fixed;              /* the first time frame, usually 0 */
    int inv_f0;                  /* frame-zero input active low */
    int inv_veto;                /* veto input active low: count while it is low */
    int loop_io;                 /* test mode: TTL inputs looped to the outputs */
    int debounce;                /* card 0's trigger-input debounce, clock cycles */
    int override_debounce_other; /* the other cards' debounce, if not 0 */
    uint32_t card0_a_extra;      /* extra bits for card 0's register A, usually 0 */
    uint32_t cardn_a_extra;      /* extra bits for the other cards' register A, usually 0 */
    int padding[2];
} Xsp3Timing;

/* ---- Shared-memory unlink policy of the two-argument xsp3_close. ---- */
typedef enum { Xsp3UnlinkNone = 0, Xsp3UnlinkCreated = 1, Xsp3UnlinkAll = 2 } Xsp3Unlink;

/*
 * Per-channel trigger settings (xsp3_get_trigger_b): 27 ints. Only two members are documented and
 * used by the shim: event_time (index 13, the event width in clock ticks) and enb_variable_width
 * (index 23). The others are kept as opaque padding so the size matches.
 */
typedef struct {
    int undocumented_0_12[13];
    int event_time;
    int undocumented_14_22[9];
    int enb_variable_width;
    int undocumented_24_26[3];
} Xspress3_TriggerB;

/* ---- Connection and lifecycle. ---- */
int xsp3_config(int ncards, int num_tf, char *baseIPaddress, int basePort, char *baseMACaddress,
                int nchan, int createmodule, char *modname, int debug, int card_index);
#if X3S_XSP3_CLOSE_ARGS == 1
int xsp3_close(int path);
#else
int xsp3_close(int path, Xsp3Unlink unlink);
#endif
char *xsp3_get_error_message(void);
int xsp3_clocks_setup(int path, int card, int clk_src, int flags, int tp_type);
int xsp3_set_sync_mode(int path, int sync_mode, int enb_global_reset, int gr_card);
int xsp3_restore_settings(int path, char *dir, int force_mismatch);
int xsp3_format_run(int path, int chan, int aux1_mode, int aux1_thres, int aux2_cont, int flags,
                    int aux2_mode, int nbits_eng);
int xsp3_set_run_flags(int path, int flags);

/* ---- Information. ---- */
int xsp3_get_num_chan(int path);
int xsp3_get_num_cards(int path);
/* Channels in use on card `card`; a system's channels are numbered across its cards in order. */
int xsp3_get_num_chan_used(int path, int card);
int xsp3_get_bins_per_mca(int path);
XspressGeneration xsp3_get_generation(int path, int card);
/* 1: a second-generation Mini (Mk2). Declared from the 2024-05 SDK on. */
int xsp3_is_xsp3m_plus(int path);
int xsp3_get_revision(int path);
double xsp3_get_clock_period(int path, int card);
int xsp3_get_trigger_b(int path, int chan, Xspress3_TriggerB *trig_b);

/* ---- Windows and thresholds. ---- */
int xsp3_set_window(int path, int chan, int win, int low, int high);
int xsp3_get_window(int path, int chan, int win, uint32_t *low, uint32_t *high);
int xsp3_set_good_thres(int path, int chan, uint32_t good_thres);
int xsp3_get_good_thres(int path, int chan, uint32_t *good_thres);

/* ---- Timing and run control (card -1 means all cards). ---- */
int xsp3_set_timing(int path, Xsp3Timing *setup);
int xsp3_itfg_setup(int path, int card, int num_tf, uint32_t col_time, int trig_mode,
                    int gap_mode);
int xsp3_histogram_clear(int path, int first_chan, int num_chan, int first_frame, int num_frames);
int xsp3_histogram_arm(int path, int card);
int xsp3_histogram_start(int path, int card);
int xsp3_histogram_continue(int path, int card);
int xsp3_histogram_pause(int path, int card);
int xsp3_histogram_stop(int path, int card);

/* ---- Readout. Frame numbers passed to the read and ack calls: x3s_frame_addr.h. ---- */
int64_t xsp3_scaler_check_progress_details(int path, Xsp3ErrFlag *flags, int quiet,
                                           int64_t *furthest_frame);
/* C order [tf][chan][aux][eng], u32. */
int xsp3_histogram_read4d(int path, uint32_t *buffer, unsigned eng, unsigned aux, unsigned chan,
                          unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan,
                          unsigned num_tf);
/* C order [t][chan][scaler], u32. */
int xsp3_scaler_read(int path, uint32_t *dest, unsigned scaler, unsigned chan, unsigned t,
                     unsigned n_scalers, unsigned n_chan, unsigned dt);
/* Note the order: first frame before the channel count. */
int xsp3_histogram_circ_ack(int path, unsigned chan, unsigned tf, unsigned num_chan,
                            unsigned num_tf);
int64_t xsp3_histogram_get_circ_overrun(int path, int chan, int64_t *first);

#ifdef __cplusplus
}
#endif

#endif /* X3S_XSP3_API_H */
