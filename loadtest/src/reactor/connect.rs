//! A connection's life outside the workload: the socket (TCP_NODELAY), the TCP connect bounded by a linked io_uring
//! timeout, the WebSocket client handshake (bounded by a sweep with the same timeout), and the teardown. Failures are
//! counted by kind and never retried.

use ringws::deflate::DeflateParams;
use ringws::proto::{Connection, Limits, Role};

use super::conn::St;
use super::state::Reactor;
use super::workload;
use crate::deflate::ConnDeflate;
use crate::stats::{record_ns, ErrKind};

/// The target's address in the form `connect` takes.
pub(super) fn sockaddr(
    addr: std::net::SocketAddr,
) -> (Box<libc::sockaddr_storage>, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is valid; we fill the matching family struct within its bounds.
    let mut ss: Box<libc::sockaddr_storage> = Box::new(unsafe { std::mem::zeroed() });
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = unsafe { &mut *(ss.as_mut() as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = unsafe { &mut *(ss.as_mut() as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl Reactor {
    /// Open connection `i`: a socket with TCP_NODELAY, then an asynchronous connect with its timeout.
    pub(super) fn start_connect(&mut self, i: usize, now: u64) {
        let family = if self.ctx.plan.targets[self.target_of(i)].addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket syscalls on an fd we own.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let c = &mut self.conns[i];
        c.t_start = now;
        if fd < 0 {
            c.st = St::Dead;
            self.ctx.stats.err(ErrKind::ConnectOther);
            self.ctx.stats.connect_failed += 1;
            self.ctx.resolved += 1;
            return;
        }
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        c.fd = fd;
        c.st = St::Connecting;
        c.connecting = true;
        self.ctx.connecting += 1;
        self.submit_connect(i, fd);
    }

    /// The connect or the handshake failed: count it (once) and drop the connection.
    pub(super) fn connect_failed(&mut self, i: usize, kind: ErrKind) {
        let c = &mut self.conns[i];
        if matches!(c.st, St::Connecting | St::Handshaking) {
            self.ctx.connecting -= 1;
            self.ctx.resolved += 1;
            self.ctx.stats.connect_failed += 1;
            self.ctx.stats.err(kind);
        }
        self.kill(i);
    }

    /// The connect completed: send the upgrade request and read the response.
    pub(super) fn on_connect(&mut self, i: usize, res: i32, now: u64) {
        self.conns[i].connecting = false;
        if self.conns[i].st != St::Connecting {
            self.maybe_close(i);
            return;
        }
        if res < 0 {
            let kind = match -res {
                libc::ECONNREFUSED => ErrKind::ConnectRefused,
                libc::ECANCELED | libc::ETIMEDOUT | libc::ETIME => ErrKind::ConnectTimeout,
                _ => ErrKind::ConnectOther,
            };
            self.connect_failed(i, kind);
            return;
        }
        if !self.tls_start(i) {
            return;
        }
        let plan = &self.ctx.plan;
        let target = &plan.targets[self.target_of(i)];
        let c = &mut self.conns[i];
        c.st = St::Handshaking;
        c.rbuf = vec![0u8; self.ctx.rbuf_size.max(1024)].into_boxed_slice();
        c.sbuf.clear();
        if let Some(offer) = &plan.deflate {
            let hs = *c.hs.take().expect("handshake");
            c.hs = Some(Box::new(hs.with_extensions(&offer.header)));
        }
        c.hs.as_ref().expect("handshake").write_request(
            &mut c.sbuf,
            &target.host,
            &target.path,
            &[],
        );
        self.tls_seal(i);
        self.submit_send(i);
        self.arm_recv(i);
        let _ = now;
    }

    /// Fail every handshake older than the connect timeout.
    pub(super) fn sweep_handshakes(&mut self, now: u64) {
        let limit = self.ctx.plan.connect_timeout.as_nanos() as u64;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.st == St::Handshaking && now.saturating_sub(c.t_start) > limit {
                self.connect_failed(i, ErrKind::ConnectTimeout);
            }
        }
    }

    /// Bytes of the server's response arrived: wait for more, fail, or open the connection.
    pub(super) fn handshake_read(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        let res =
            c.hs.as_ref()
                .expect("handshake")
                .parse_response_details(&c.rbuf[..c.rlen as usize]);
        match res {
            Ok(None) => {
                if c.rlen as usize == c.rbuf.len() {
                    self.connect_failed(i, ErrKind::Handshake);
                } else {
                    self.arm_recv(i);
                }
            }
            Err(_) => self.connect_failed(i, ErrKind::Handshake),
            Ok(Some(r)) => {
                let deflate = match (&self.ctx.plan.deflate, r.extensions.as_deref()) {
                    (Some(offer), Some(v)) => match offer.accept(v) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            self.ctx.stats.deflate.bad_response.get_or_insert(e);
                            self.connect_failed(i, ErrKind::Handshake);
                            return;
                        }
                    },
                    _ => None,
                };
                if self.ctx.plan.deflate.is_some() {
                    self.ctx
                        .stats
                        .deflate
                        .note_handshake(deflate, r.extensions.as_deref());
                }
                self.handshake_done(i, r.consumed, deflate, now)
            }
        }
    }

    /// The server accepted the upgrade (its response took `consumed` bytes): the connection is open. Frames that
    /// came with the response are decoded at once.
    fn handshake_done(
        &mut self,
        i: usize,
        consumed: usize,
        deflate: Option<DeflateParams>,
        now: u64,
    ) {
        let c = &mut self.conns[i];
        let len = c.rlen as usize;
        c.rbuf.copy_within(consumed..len, 0);
        c.rlen = (len - consumed) as u32;
        c.hs = None;
        c.st = St::Open;
        let mut proto = Connection::new(Role::Client, Limits::default());
        if let Some(p) = deflate {
            proto.set_rsv1_allowed(true);
            c.deflate = Some(Box::new(ConnDeflate::new(p)));
        }
        c.proto = Some(proto);
        let rb = self.ctx.rbuf_size;
        if self.ctx.bufring.is_none() && c.rbuf.len() != rb && (c.rlen as usize) <= rb {
            let mut b = vec![0u8; rb].into_boxed_slice();
            b[..c.rlen as usize].copy_from_slice(&c.rbuf[..c.rlen as usize]);
            c.rbuf = b;
        }
        workload::on_open(&self.ctx, c);
        self.ctx.connecting -= 1;
        self.ctx.resolved += 1;
        self.ctx.open += 1;
        self.ctx.stats.connected += 1;
        record_ns(&mut self.ctx.stats.connect, now - c.t_start);
        self.mark_dirty(i);
        self.process(i, now);
        if self.ctx.bufring.is_some() {
            // Multishot receives from here on: the connection needs no buffer of its own.
            self.conns[i].rbuf = Box::default();
        }
    }

    /// Drop a connection: shut the socket down (completing its operations), close it once none is in flight.
    pub(super) fn kill(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Open {
            self.ctx.open -= 1;
        }
        if c.st != St::Dead && c.fd >= 0 {
            // SAFETY: our fd; shutdown makes pending recv/send complete.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
        c.st = St::Dead;
        self.maybe_close(i);
    }

    /// Close a dead connection's socket and free its buffers once no operation references them.
    pub(super) fn maybe_close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Dead && c.fd >= 0 && !c.connecting && !c.recv_armed && !c.send_busy {
            // SAFETY: no operation references this fd or its buffers any more.
            unsafe { libc::close(c.fd) };
            c.fd = -1;
            c.rbuf = Box::default();
            c.sbuf = Vec::new();
            c.stamps = std::collections::VecDeque::new();
            c.tmpl = None;
            c.hs = None;
            c.proto = None;
            c.tls = None;
            c.deflate = None;
        }
    }
}
