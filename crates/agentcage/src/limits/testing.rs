//! The crate-internal limits items the root-tier tests (`tests/root.rs`) drive directly: the
//! leaf cgroup on a given layout, reaping, and rlimits. Not an API: hidden, and may change.

pub use super::cgroup::{
    detect_layout, in_leaf, prepare, prepare_in, prepare_with, process_state, random_u64, reap_in,
    CgroupError, Ctl, Hierarchy, Layout, PreparedCgroup, ReapReport, Teardown, Version,
    LEAF_PREFIX, PROCS_DIR,
};
pub use super::rlimit::{
    apply as apply_rlimits, prepare as prepare_rlimits, NprocMode, Resource, RlimitError,
};
