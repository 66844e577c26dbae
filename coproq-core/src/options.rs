//! The settings of a link and of the worker behind it, shared by the handle, the builder
//! and the launcher.

use std::time::Duration;

use crate::link::LinkOptions;

/// Settings shared by both ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) link: LinkOptions,
    pub(crate) close_grace: Duration,
    pub(crate) startup_timeout: Duration,
    /// Start the worker in a process group of its own.
    pub(crate) process_group: bool,
    /// The default deadline of every call made through the handle.
    pub(crate) call_timeout: Option<Duration>,
    /// How often both ends ping (none by default).
    pub(crate) heartbeat: Option<Duration>,
    /// The handler table is shared with other links (a pool's workers): closing one
    /// link leaves it alone.
    pub(crate) shared_handlers: bool,
    /// How many of the last lines of the worker's stderr a `Disconnected` quotes (0:
    /// its stderr is not followed).
    pub(crate) stderr_tail: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            link: LinkOptions {
                max_frame: 1 << 30,
                report_protocol_errors: false,
                spin: None,
                concurrency: None,
                report_starts: false,
                memory_limit: None,
            },
            close_grace: Duration::from_secs(2),
            startup_timeout: Duration::from_secs(30),
            process_group: false,
            call_timeout: None,
            heartbeat: None,
            shared_handlers: false,
            stderr_tail: 0,
        }
    }
}
