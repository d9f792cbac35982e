//! Ctrl-C and SIGTERM for the long commands (`xfel-extract`, `xfel-validate`, `lsxfel`,
//! `xfel-make-virtual-cxi`).
//!
//! SIGINT (Ctrl-C) and SIGTERM (`kill`, a Slurm cancel or time limit) set a flag that the
//! loops over files, over runs of data and over output writes poll between bounded steps;
//! the command then removes what it wrote, prints one line and exits with
//! [`StopSignal::exit_code`]: 130 after SIGINT, 143 after SIGTERM (128 + the signal, as a
//! shell reports it). A second signal of either kind while the first is being handled ends
//! the process at once, so it can always be stopped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

use super::error::{Error, Result};

/// Exit status of a command stopped by SIGINT: 128 + SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status of a command stopped by SIGTERM: 128 + SIGTERM.
pub const EXIT_TERMINATED: u8 = 143;

/// The signal that stopped a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, `scancel`, a batch system's time limit).
    Terminate,
}

impl StopSignal {
    /// 128 + the signal number: [`EXIT_INTERRUPTED`] or [`EXIT_TERMINATED`].
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => EXIT_INTERRUPTED,
            StopSignal::Terminate => EXIT_TERMINATED,
        }
    }

    /// The word the commands print: `interrupted` or `terminated`.
    pub fn verb(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "interrupted",
            StopSignal::Terminate => "terminated",
        }
    }
}

/// Whether a stopping signal arrived.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The number of the first stopping signal (0: none yet).
static FIRST: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catch SIGINT and SIGTERM from now on (instead of dying at once): the first sets the
/// flag that [`interrupted`] reads, a second exits with its own status (130 or 143).
pub fn catch_interrupt() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    let first = FIRST.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for (signal, code) in [(SIGINT, EXIT_INTERRUPTED), (SIGTERM, EXIT_TERMINATED)] {
        // Registered first, so it sees the flag as the earlier signals left it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(code),
            Arc::clone(flag),
        )?;
        // Registered before the flag is set, so a second signal never overwrites it: it
        // ends the process in the handler above.
        let number = usize::try_from(signal).unwrap_or(0);
        signal_hook::flag::register_usize(signal, Arc::clone(first), number)?;
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupt`].
pub fn interrupted() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// The signal that arrived since [`catch_interrupt`], if any.
pub fn stop_signal() -> Option<StopSignal> {
    if !interrupted() {
        return None;
    }
    let first = FIRST.get().map_or(0, |f| f.load(Ordering::SeqCst));
    if usize::try_from(SIGTERM).is_ok_and(|term| term == first) {
        Some(StopSignal::Terminate)
    } else {
        Some(StopSignal::Interrupt)
    }
}

/// `Err(Error::Interrupted)` once a signal arrived: the polling point of long loops.
pub(crate) fn check() -> Result<()> {
    if interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
