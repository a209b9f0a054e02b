//! The thread-per-core io_uring runtime, the handler API, pub/sub and the HTTP side.
