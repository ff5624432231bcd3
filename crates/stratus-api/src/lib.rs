//! Types of the Stratus public API (`/v1`), shared by the server and the client.
//!
//! Everything a client sends or receives is declared here once, so the server, the CLI and
//! the generated OpenAPI document cannot disagree about a field.

pub mod billing;
pub mod catalog;
pub mod compute;
pub mod error;
pub mod monitoring;
pub mod networks;
pub mod sigv4;
pub mod stacks;
pub mod types;
pub mod volumes;

pub use billing::*;
pub use catalog::*;
pub use compute::*;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use monitoring::*;
pub use networks::*;
pub use stacks::*;
pub use types::*;
pub use volumes::*;
