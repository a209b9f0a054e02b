//! Bare io_uring TCP echo: the transport floor ringws' WebSocket echo is measured against. No WebSocket, no framing:
//! what ringws' reactor does per message minus everything above the socket.
//!
//! - one ring, `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN`, one thread;
//! - multishot accept on the listener; multishot recv with a provided buffer ring (`FLOOR_BUFS` x `FLOOR_BUF_SIZE`,
//!   default 64 x 64 KiB, incremental consumption where the kernel has it: ringws' defaults);
//! - received bytes are copied into the connection's pending output and the buffer goes straight back to the ring;
//!   after each batch of completions every connection with pending output and no send in flight gets ONE send
//!   (one in flight per connection keeps the byte order; a short send resubmits the remainder);
//! - one `io_uring_enter` per loop turn (submit and wait for at least one completion).
//!
//! Usage: `uring_echo ADDR` (e.g. 127.0.0.1:9110).

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use floor::bufring;

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
const BGID: u16 = 0;

fn ud(kind: u64, fd: RawFd) -> u64 {
    kind << 32 | fd as u32 as u64
}

#[derive(Default)]
struct Conn {
    /// Bytes of the send in flight (not touched until its completion).
    inflight: Vec<u8>,
    /// How much of `inflight` the kernel has taken.
    sent: usize,
    /// Bytes received since the send in flight was submitted.
    pending: Vec<u8>,
    sending: bool,
    recv_armed: bool,
    closing: bool,
    /// Listed in `dirty` for the end of this loop turn.
    dirty: bool,
}

struct Echo {
    ring: IoUring,
    bufs: bufring::BufRing,
    /// Connections by file descriptor (a descriptor is closed only when nothing is in flight for it, so a
    /// completion always finds its own connection).
    conns: Vec<Option<Conn>>,
    dirty: Vec<RawFd>,
    listen_fd: RawFd,
}

impl Echo {
    /// Queue one SQE, submitting first when the submission queue is full.
    ///
    /// # Safety
    /// The memory the entry points at must stay valid until its completion.
    unsafe fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: the caller's contract.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.bufs.publish();
            let _ = self.ring.submit();
        }
    }

    fn arm_accept(&mut self) {
        let e = opcode::AcceptMulti::new(types::Fd(self.listen_fd))
            .build()
            .user_data(ud(ACCEPT, 0));
        // SAFETY: a multishot accept carries no pointers.
        unsafe { self.push(e) };
    }

    fn arm_recv(&mut self, fd: RawFd) {
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(ud(RECV, fd));
        // SAFETY: the buffers come from the registered buffer ring, which is never unmapped.
        unsafe { self.push(e) };
        if let Some(c) = self.conns[fd as usize].as_mut() {
            c.recv_armed = true;
        }
    }

    fn mark(&mut self, fd: RawFd) {
        if let Some(c) = self.conns[fd as usize].as_mut() {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(fd);
            }
        }
    }

    fn submit_send(&mut self, fd: RawFd) {
        let c = self.conns[fd as usize].as_mut().expect("live connection");
        let rest = &c.inflight[c.sent..];
        let e = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(ud(SEND, fd));
        c.sending = true;
        // SAFETY: `inflight` is neither resized nor dropped while `sending` is set (see `on_send` and `flush`), and
        // a connection is dropped only when no send is in flight.
        unsafe { self.push(e) };
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if res >= 0 {
            let fd = res;
            if self.conns.len() <= fd as usize {
                self.conns.resize_with(fd as usize + 1, || None);
            }
            self.conns[fd as usize] = Some(Conn::default());
            self.arm_recv(fd);
        } else {
            eprintln!(
                "uring_echo: accept: {}",
                std::io::Error::from_raw_os_error(-res)
            );
        }
        if !cqueue::more(flags) {
            self.arm_accept();
        }
    }

    fn on_recv(&mut self, fd: RawFd, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if res > 0 {
            let bid = cqueue::buffer_select(flags);
            let data = bid.and_then(|b| self.bufs.take(b, res as usize, flags));
            let c = self.conns[fd as usize].as_mut().expect("live connection");
            match data {
                Some(d) => c.pending.extend_from_slice(d),
                None => {
                    // The kernel reported a buffer outside the ring: drop the connection.
                    c.closing = true;
                    // SAFETY: shutdown on a descriptor we own; it ends the armed recv.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        } else if res != -libc::ENOBUFS {
            // End of stream or an error: close once nothing is in flight.
            self.conns[fd as usize]
                .as_mut()
                .expect("live connection")
                .closing = true;
        }
        if !more {
            let c = self.conns[fd as usize].as_mut().expect("live connection");
            c.recv_armed = false;
            if !c.closing {
                // Ended by ENOBUFS or with data: the buffers are back by the end of this turn, so re-arm.
                self.arm_recv(fd);
            }
        }
        self.mark(fd);
    }

    fn on_send(&mut self, fd: RawFd, res: i32) {
        let c = self.conns[fd as usize].as_mut().expect("live connection");
        if res < 0 {
            c.sending = false;
            c.closing = true;
            // Ends the armed recv, so the connection can be closed.
            // SAFETY: shutdown on a descriptor we own.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        } else {
            c.sent += res as usize;
            if c.sent < c.inflight.len() {
                self.submit_send(fd);
                return;
            }
            c.sending = false;
            c.inflight.clear();
            c.sent = 0;
        }
        self.mark(fd);
    }

    /// End of a loop turn: one send for every connection with output and none in flight; close finished ones.
    fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &fd in &dirty {
            let Some(c) = self.conns[fd as usize].as_mut() else {
                continue;
            };
            c.dirty = false;
            if c.closing {
                if !c.sending && !c.recv_armed {
                    self.conns[fd as usize] = None;
                    // SAFETY: nothing is in flight for this descriptor any more.
                    unsafe { libc::close(fd) };
                }
                continue;
            }
            if !c.sending && !c.pending.is_empty() {
                std::mem::swap(&mut c.inflight, &mut c.pending);
                self.submit_send(fd);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
        self.bufs.publish();
    }

    fn run(&mut self) -> ! {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
        self.arm_accept();
        loop {
            if let Err(e) = self.ring.submit_and_wait(1) {
                if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
                    eprintln!("uring_echo: io_uring_enter: {e}");
                    std::process::exit(1);
                }
            }
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(u, res, flags) in &cqes {
                let fd = (u & 0xffff_ffff) as RawFd;
                match u >> 32 {
                    ACCEPT => self.on_accept(res, flags),
                    RECV => self.on_recv(fd, res, flags),
                    SEND => self.on_send(fd, res),
                    _ => unreachable!("user_data is ours"),
                }
            }
            self.flush();
        }
    }
}

fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let addr = floor::addr_arg("uring_echo ADDR   (env FLOOR_BUFS=64 FLOOR_BUF_SIZE=65536)");
    let listener = floor::listener(addr).unwrap_or_else(|e| {
        eprintln!("uring_echo: bind {addr}: {e}");
        std::process::exit(1);
    });
    let ring = floor::ring(4096).unwrap_or_else(|e| {
        eprintln!("uring_echo: io_uring setup (SINGLE_ISSUER|COOP_TASKRUN|DEFER_TASKRUN, Linux 6.1+): {e}");
        std::process::exit(1);
    });
    let entries = env_num("FLOOR_BUFS", 64)
        .clamp(1, 32768)
        .next_power_of_two() as u16;
    let size = env_num("FLOOR_BUF_SIZE", 64 * 1024).max(64);
    let bufs =
        bufring::BufRing::register(&ring.submitter(), entries, size, BGID).unwrap_or_else(|e| {
            eprintln!("uring_echo: buffer ring: {e}");
            std::process::exit(1);
        });
    let local = listener.local_addr().map_or(addr, |a| a);
    eprintln!(
        "uring_echo: listening on {local}, {entries} x {size} B receive buffers ({})",
        if bufs.incremental {
            "incremental"
        } else {
            "whole-buffer"
        }
    );
    let mut echo = Echo {
        ring,
        bufs,
        conns: Vec::new(),
        dirty: Vec::new(),
        listen_fd: listener.as_raw_fd(),
    };
    echo.run();
}
