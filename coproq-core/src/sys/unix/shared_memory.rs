//! Sealed shared memory: an anonymous memory object filled once, then sealed so that
//! nobody (its maker included) can change, shrink or grow it, and mapped read-only by
//! whoever holds its descriptor.
//!
//! Linux has this as `memfd_create` with seals. macOS has no sealable memory object:
//! there [`create_sealed`] says so, and callers keep the bytes on the heap instead.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// A read-only, shared mapping of a sealed memory object: immutable bytes.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapped bytes are sealed against writing and mapped read-only, so no one can
// change them while any thread reads them, and the mapping is unmapped only by its drop.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives out only shared references to immutable bytes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `self` drops (or dangles, aligned,
        // for an empty mapping); the object is sealed, so nothing writes them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: this maps `len` bytes at `ptr` (made by `map_read_only`), and no
            // reference into it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// The seals that make a memory object immutable: no write, no shrink, no growth, and no
/// change to the seals.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn immutable() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

/// A new memory object of `len` bytes, filled by `fill`, then sealed immutable; with its
/// read-only mapping.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn create_sealed(
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> io::Result<(OwnedFd, Mapping)> {
    use rustix::fs::{MemfdFlags, fcntl_add_seals, ftruncate, memfd_create};
    use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
    let fd = memfd_create(
        "coproq-shared-bytes",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    ftruncate(&fd, len as u64)?;
    if len > 0 {
        // SAFETY: a new shared mapping of `len` bytes of an object of that size, which no
        // one else holds yet; unmapped below, before the object is sealed.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        // SAFETY: `ptr` maps `len` writable bytes (zeros) that nothing else references.
        fill(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) });
        // SAFETY: the mapping made above; the slice lent to `fill` is gone. Sealing
        // against writes needs every writable mapping gone.
        unsafe { munmap(ptr, len)? };
    }
    fcntl_add_seals(&fd, immutable())?;
    let mapping = map_read_only(fd.as_fd(), len)?;
    Ok((fd, mapping))
}

/// macOS and others: no sealable memory object.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn create_sealed(
    _len: usize,
    _fill: impl FnOnce(&mut [u8]),
) -> io::Result<(OwnedFd, Mapping)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no sealed memory objects on this system",
    ))
}

/// Maps a received memory object read-only, after checking that it is one, that it is
/// sealed against every change, and that it holds exactly `len` bytes (what its sender
/// declared). Why not, if it is not.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn open_sealed(fd: BorrowedFd<'_>, len: u64) -> Result<Mapping, String> {
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| format!("the descriptor is not a sealable memory object ({e})"))?;
    let needed = immutable() - rustix::fs::SealFlags::SEAL;
    if !seals.contains(needed) {
        return Err(format!(
            "the memory object is not sealed against change (its seals: {seals:?})"
        ));
    }
    let size = rustix::fs::fstat(fd)
        .map_err(|e| format!("the memory object's size is unknown ({e})"))?
        .st_size;
    if u64::try_from(size).ok() != Some(len) {
        return Err(format!(
            "the memory object holds {size} bytes, and its sender declared {len}"
        ));
    }
    let len = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
    map_read_only(fd, len).map_err(|e| format!("the memory object cannot be mapped ({e})"))
}

/// macOS and others: nothing is sealed, so nothing is accepted.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn open_sealed(_fd: BorrowedFd<'_>, _len: u64) -> Result<Mapping, String> {
    Err("no sealed memory objects on this system".into())
}

/// A read-only shared mapping of the first `len` bytes of `fd`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn map_read_only(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
    use rustix::mm::{MapFlags, ProtFlags, mmap};
    if len == 0 {
        return Ok(Mapping {
            ptr: NonNull::dangling(),
            len: 0,
        });
    }
    // SAFETY: a new mapping, which nothing references yet; the object is sealed, so its
    // size (checked by the callers) cannot shrink under it.
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd,
            0,
        )?
    };
    Ok(Mapping {
        ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
        len,
    })
}
