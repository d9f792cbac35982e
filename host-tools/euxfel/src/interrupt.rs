//! Ctrl-C for the long commands (`xfel-extract`, `xfel-validate`, `lsxfel`).
//!
//! SIGINT sets a flag that the loops over files, over runs of data and over output
//! writes poll between bounded steps; the command then removes what it wrote, prints
//! one line and exits with [`EXIT_INTERRUPTED`]. A second SIGINT while the first is
//! being handled ends the process at once, so it can always be stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::SIGINT;

use super::error::{Error, Result};

/// Exit status of an interrupted command: 128 + SIGINT, as a shell reports it.
pub const EXIT_INTERRUPTED: u8 = 130;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Catch SIGINT from now on (instead of dying at once): the first sets the flag that
/// [`interrupted`] reads, a second exits with [`EXIT_INTERRUPTED`].
pub fn catch_interrupt() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    // Registered first, so it sees the flag as the earlier signals left it.
    signal_hook::flag::register_conditional_shutdown(
        SIGINT,
        i32::from(EXIT_INTERRUPTED),
        Arc::clone(flag),
    )?;
    signal_hook::flag::register(SIGINT, Arc::clone(flag))?;
    Ok(())
}

/// Whether SIGINT arrived since [`catch_interrupt`].
pub fn interrupted() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// `Err(Error::Interrupted)` once SIGINT arrived: the polling point of long loops.
pub(crate) fn check() -> Result<()> {
    if interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
