//! What the simulated SDK was given ([`crate::Xspress3::sim_record`]): the proof, in tests, that
//! each setting reaches the SDK.

use crate::sys::raw;

/// How a card was last started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardRun {
    Stopped,
    /// `xsp3_histogram_start`.
    Started,
    /// `xsp3_histogram_arm` (software triggers).
    Armed,
}

/// `xsp3_itfg_setup` as a card was given it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItfgRecord {
    pub trig_mode: i32,
    pub gap_mode: i32,
    pub col_time: u32,
    pub frames: u32,
}

/// One card's clock, timing and run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardRecord {
    /// `xsp3_clocks_setup`'s source and flags; `None`: never called.
    pub clock: Option<(i32, i32)>,
    /// Global timing register A as the whole-system timing left it.
    pub time_a: u32,
    pub time_fixed: u32,
    pub itfg: Option<ItfgRecord>,
    pub run: CardRun,
    /// The order of the card's last start or arm among all cards' (1, 2, ...).
    pub start_seq: u32,
}

/// The last `xsp3_set_timing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingRecord {
    /// `XSP3_GTIMA_SRC_*` of card 0.
    pub t_src: i32,
    pub fixed: u32,
    pub invert_f0: bool,
    pub invert_veto: bool,
    pub debounce: i32,
    pub override_debounce_other: i32,
}

/// Everything the simulated SDK was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRecord {
    pub sync_mode: Option<i32>,
    /// `xsp3_set_timing` calls, and the last one.
    pub timing_calls: u32,
    pub timing: TimingRecord,
    pub cards: Vec<CardRecord>,
    /// Per channel `[low0, high0, low1, high1]`.
    pub windows: Vec<[u32; 4]>,
    pub good_thresholds: Vec<u32>,
}

impl SimRecord {
    pub(crate) fn from_raw(r: &raw::x3s_sim_record) -> Self {
        let n_cards = (r.n_cards as usize).min(r.cards.len());
        let n_channels = (r.n_channels as usize).min(r.windows.len());
        SimRecord {
            sync_mode: (r.sync_mode >= 0).then_some(r.sync_mode),
            timing_calls: r.timing_calls,
            timing: TimingRecord {
                t_src: r.t_src,
                fixed: r.fixed,
                invert_f0: r.inv_f0 != 0,
                invert_veto: r.inv_veto != 0,
                debounce: r.debounce,
                override_debounce_other: r.override_debounce_other,
            },
            cards: r.cards[..n_cards]
                .iter()
                .map(|c| CardRecord {
                    clock: (c.clk_src >= 0).then_some((c.clk_src, c.clk_flags)),
                    time_a: c.time_a,
                    time_fixed: c.time_fixed,
                    itfg: (c.itfg_trig_mode >= 0).then_some(ItfgRecord {
                        trig_mode: c.itfg_trig_mode,
                        gap_mode: c.itfg_gap_mode,
                        col_time: c.itfg_col_time,
                        frames: c.itfg_frames,
                    }),
                    run: match c.run {
                        1 => CardRun::Started,
                        2 => CardRun::Armed,
                        _ => CardRun::Stopped,
                    },
                    start_seq: c.start_seq,
                })
                .collect(),
            windows: r.windows[..n_channels].to_vec(),
            good_thresholds: r.good_thres[..n_channels].to_vec(),
        }
    }
}
