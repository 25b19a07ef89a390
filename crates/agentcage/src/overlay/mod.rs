//! Overlay workspace (issue #16): the workspace is the lower layer of a rootless overlayfs
//! mounted at the workspace's path inside the sandbox; every write, creation, rename and
//! deletion lands in an upper directory outside the sandbox, where `diff` reads it and
//! `commit` applies it to the workspace (or `discard` drops it).
//!
//! Layout of one overlay (a directory, mode 0700, never inside the workspace and never
//! mounted in the sandbox): `upper/` and `work/` (overlayfs' layers, owned by the sandbox's
//! host uid), `meta.json` (the workspace, the name) and `base.json` (what the lower files
//! were when the launcher first saw them changed: the conflict check of `commit`).
//!
//! The upper layer is attacker-written: it is read by fd only (`sys/fsx.rs`: openat2 with
//! RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_NOFOLLOW), a symlink in it is a change of type
//! symlink, never a path to follow; the workspace is written the same way.

mod changes;
mod commit;
mod renames;
mod store;

use crate::sys::fsx;

pub use changes::{record_base, Change, ChangeKind, EntryType, RenameEvidence};
pub use commit::{commit, discard, CommitReport};
pub use renames::with_renames;
pub use store::{
    check_available, check_layers, check_path, default_root, list, name_for_workspace, Meta,
    Overlay, OverlayError,
};
