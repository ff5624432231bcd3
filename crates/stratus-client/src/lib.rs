//! The Stratus client: an HTTP client for the `/v1` API (token or signed access-key
//! requests) and the command-line interface built on it.

pub mod billing_cli;
pub mod catalog_cli;
pub mod cli;
pub mod client;
pub mod compute_cli;
pub mod monitor_cli;
pub mod net_cli;
pub mod output;
pub mod settings;
pub mod stack_cli;
pub mod volume_cli;

pub use client::{Auth, Client, ClientError};
