//! One module per command; each has `Args` (clap) and `run`.

pub mod check;
pub mod demo;
pub mod dev;
pub mod package;
pub mod rollback;
pub mod send;
