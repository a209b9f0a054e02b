//! Why a server could not start.

use std::io;
use std::net::SocketAddr;

use super::config::ConfigError;
use crate::tls::TlsConfigError;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config is invalid.
    Config(ConfigError),
    /// io_uring cannot be used here; the message says why and how to fix it.
    IoUringUnavailable(String),
    /// The listener could not bind this address.
    Bind(SocketAddr, io::Error),
    /// Another system error (thread spawn, eventfd, buffer ring registration).
    Io(io::Error),
    /// The TLS certificate or key (`Config::tls`) cannot be used; the error names the file and the problem.
    Tls(TlsConfigError),
    /// A config option this kernel cannot provide; the message names it and what it needs.
    Unsupported(&'static str),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::IoUringUnavailable(why) => write!(f, "io_uring is unavailable: {why}"),
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "TLS certificate: {e}"),
            StartError::Unsupported(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}
