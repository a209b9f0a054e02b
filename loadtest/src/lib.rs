//! `loadtest`: a WebSocket load client on io_uring (see `loadtest --help`).
//!
//! # Layout
//! A run flows from the top of this list to the bottom; each file holds one concern.
//! - `cli.rs`: the command line ([`cli::Args`]), URL and duration parsing, the file-descriptor limit check.
//! - `plan.rs`: [`plan::Plan`], the arguments checked and turned into what every thread knows about the run; the
//!   [`plan::Sync`] flags between the main thread and the reactors; the shared clock.
//! - `phases.rs`: the main thread's side of the run: signals and the io_uring check, one reactor thread each,
//!   waiting for the ramp-up, the warm-up and the measured window (CPU sampled at its edges), Ctrl-C, the join.
//! - `progress.rs`: the once-a-second progress line.
//! - `reactor/`: one io_uring reactor per thread ([`reactor::run_thread`]): `mod.rs` setup and teardown,
//!   `state.rs` its data, `conn.rs` a connection's slot, `ring.rs` every submission, the loop turn and the completion
//!   dispatch, `phases.rs` the reactor's ramp-up / measurement / close, `connect.rs` connect + TCP timeout + the
//!   WebSocket client handshake + teardown, `send.rs` and `recv.rs` the two directions, `workload.rs` the per-mode
//!   workloads (echo, flood, rate, pubsub: what to send when, what a received message means).
//! - `deflate.rs`: `--deflate`: the permessage-deflate offer, the response check, compressing what is sent and
//!   inflating what arrives (ringws' own codec), the counters and the summary's section.
//! - `frames.rs`: precomputed masked client frames, sequence numbers in payloads, their verification.
//! - `stats.rs`: per-thread counters and histograms, live totals, CPU and RSS readings.
//! - `report.rs`: the [`report::Summary`] (text or JSON) and the exit status.
//! - `tls.rs`: wss://, the client TLS layer (rustls, ring provider), sans-IO: ciphertext in, plaintext out and back;
//!   the reactor reaches it through three hooks in `reactor/tls.rs` (connect, seal before each send, open after each
//!   receive). `--ca-file` / `--insecure` decide what is trusted.
//! - `handshake.rs`: `--mode handshake`, the connection-opening rate (blocking client threads, the same TLS layer).
//!
//! # Design
//! - **Phases.** Every reactor thread opens its share of the connections (paced by `--connect-rate`, at most
//!   `--connect-concurrency` in progress per thread, each TCP connect bounded by a linked io_uring timeout and the
//!   handshake by a sweep); failures are counted by kind and never retried. Only when every thread is done does the
//!   main thread start the clock: warm-up, then the measured window, then close frames and a bounded wait for the
//!   server's close and EOF (so TIME_WAIT lands on the server, not on our ephemeral ports).
//! - **Reactor** ([`reactor`]): one io_uring per thread, driven through the shared driver `ringws::uring`
//!   (SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN when available), pinned to a CPU of the process's affinity mask.
//!   Per connection: one multishot `recv` armed on a shared ring of provided buffers (512 x 4 KiB, 16 KiB for large
//!   messages; buffers go back to the kernel right after each completion is decoded, so idle connections hold no
//!   receive buffer) and at most one `send` in flight; everything that became sendable during a loop turn goes out in
//!   that one send. All SQEs of a turn are submitted by the same `io_uring_enter` that waits for the next completions
//!   (with a timeout for the rate schedule and the clock). Slots are never reused, so `user_data` is index + op, no
//!   generations. A multishot that ends for lack of buffers (`ENOBUFS`) is re-armed after the batch has returned its
//!   buffers.
//! - **Multishot vs plain recv (measured).** `LOADTEST_RECV=plain` switches to one plain `recv` per connection into its
//!   own buffer (armed with `IORING_RECVSEND_POLL_FIRST`). Against fastwebsockets, interleaved, 3 s each: 100 x 20 B
//!   client CPU 10.3/10.5 µs/msg multishot vs 12.8/11.7 plain; 10k x 20 B 15.8/12.8 vs 14.7/13.9 (noise ±15% on this
//!   shared machine), client RSS at 10k connections 13.8 MiB vs 17.3 MiB. Multishot is the default: never worse
//!   beyond noise, less memory. A profile shows ~95% of the client's CPU in the kernel's loopback TCP path
//!   (`tcp_sendmsg` alone ~60%, most of it the server socket's receive processing done in our context), ~3% in user
//!   space, ~10 messages per `io_uring_enter`; at 10k connections 94% kernel, 5.5% user space (loadtest + libc).
//!   So the client's cost per message is the loopback TCP floor that every server pays too: measured on this shared
//!   2-core machine it is 0.8-1.1x the server's CPU per message (scripts/bench-peers.sh), not the 0.7x wanted.
//! - **Frames.** Each connection has its own random masking key (from `getrandom`) and a precomputed masked frame
//!   ([`frames::FrameTemplate`], built with `ringws::proto::write_client_frame`); a message is a memcpy of the
//!   template plus 16 masked hex digits of the connection's sequence number. Echoes are decoded by a
//!   `ringws::proto::Connection` in `Role::Client` (RFC 6455 validation, UTF-8, fragments, pings, close handshake) and
//!   every payload is compared in full against the expected sequence number and content. Measured cost of decode +
//!   verify per 20-byte echo: ~120 ns with `Connection` vs ~85 ns with a bare header parse (`decode_cost` test), i.e.
//!   ~1% of the client's per-message CPU, so the client uses the full core.
//! - **Memory per connection** (10k x 20 B echo): the `Conn` slot (280 B incl. the 96-byte protocol state), a send
//!   buffer and frame template of a few dozen bytes each and the timestamp queue; whole client RSS 13.8 MiB with
//!   10,000 connections (2 MiB of it the shared receive buffers).
//! - **Statistics** ([`stats`]): per-thread counters and hdrhistograms (µs), merged at the end; a live total per
//!   thread is published with relaxed stores for the progress line. Latency: echo from the actual send, rate from the
//!   intended send time (corrected for coordinated omission), pubsub from the intended time embedded in the text.
//!   CPU: getrusage of this process and /proc/PID/stat of `--server-pid`, both sampled at the window's edges.

pub mod cli;
pub mod deflate;
pub mod frames;
pub mod handshake;
pub mod phases;
pub mod plan;
pub mod progress;
pub mod reactor;
pub mod report;
pub mod stats;
pub mod tls;

use std::sync::Arc;

use cli::Args;
use plan::Plan;

/// Run the load test the arguments describe. Exit status: 0 ok, 1 mismatches or nothing received, 2 setup error.
pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e}");
            2
        }
    }
}

fn run_inner(args: Args) -> Result<i32, String> {
    let plan = Arc::new(Plan::from_args(&args)?);
    if plan.mode == cli::Mode::Handshake {
        // SAFETY: ignoring SIGPIPE is process-wide and harmless.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        return handshake::run(&args, &plan);
    }
    phases::prepare_process()?;
    let measurement = phases::drive(&args, &plan)?;
    Ok(report::report(&args, &plan, &measurement))
}
