//! Types this crate shares with its neighbours, behind one module so the rest of the crate
//! names them in one way.
//!
//! - [`Profile`], [`Layer`], [`LayerSet`]: the launcher's layer model (`agentcage::policy`);
//!   the matrix removes layers with `agentcage run --without LAYER`.
//! - [`OpResult`], [`Verdict`], [`Category`]: one probe output row (`agentcage_probe::schema`).

pub use agentcage::{Layer, LayerSet, Profile};
pub use agentcage_probe::schema::{parse_jsonl, Category, OpResult, Verdict};
