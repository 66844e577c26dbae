//! Separate worker binaries: the parent's `Coprocess::spawn(cmd)` and the worker's
//! `Coprocess::parent()`.

use std::sync::{Arc, Mutex, PoisonError};

use crate::coprocess::Coprocess;
use crate::error::{Error, Result};
use crate::link::Handlers;
use crate::options::Options;

use super::ParentFds;

/// The link descriptors of a spawned worker, left by the start-up hook for `parent()`.
static PARENT_FDS: Mutex<Option<ParentFds>> = Mutex::new(None);

pub(crate) fn stash(fds: ParentFds) {
    *PARENT_FDS.lock().unwrap_or_else(PoisonError::into_inner) = Some(fds);
}

/// Connects a spawned worker to its parent; once per process.
pub(crate) fn parent(options: &Options, handlers: Arc<Handlers>) -> Result<Coprocess> {
    super::ensure_start_hook_linked();
    let fds = PARENT_FDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let fds = fds.ok_or(Error::NotAWorker)?;
    super::connect_to_parent(fds, options, handlers).map(|(coproc, _)| coproc)
}
