//! The evaluation harness for detection (docs/evaluation.md): a deterministic traffic
//! simulator that produces weeks of realistic API-token traffic with labelled misuse, and a
//! scorer that runs the detectors over it (or reads findings made elsewhere) and reports
//! per-detector recall, false positives per 1,000 token-days, throughput and memory.
//!
//! Everything follows from a seed through the crate's own PRNG, so a trace is reproducible
//! anywhere. The simulator never looks at what the detectors do: normal traffic is modelled on
//! how people, services, jobs and partners use an API, not tuned to stay under any threshold.

pub mod inject;
pub mod measure;
pub mod rng;
pub mod score;
pub mod trace;
pub mod traffic;
pub mod wire;
pub mod world;
pub mod zone;

pub use trace::{Labels, SimConfig, generate, stream};
