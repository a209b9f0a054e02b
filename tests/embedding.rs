//! An application that embeds ringws keeps its own threads to itself: starting and stopping a server must not
//! interrupt the caller's blocking IO.
//!
//! Regression test for the suite's one-run-in-ten EINTR (issue 9). `Server::start` used to create and drop a probe
//! io_uring on the caller's thread. When a ring is released, the kernel's ring-exit work queues task work with
//! `TWA_SIGNAL` to every task that ever used the ring, so some time after `start` returned, whatever timed blocking
//! call that thread was in (`recv` with `SO_RCVTIMEO`, as in every test's client) failed with `EINTR`.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::Duration;

use ringws::server::{Config, Handler, Message, Server, Upgrade, UpgradeRequest, WebSocket};

struct Echo;
impl Handler for Echo {
    type Data = ();
    fn upgrade(&self, _req: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn message(&self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        ws.send(msg);
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.workers = 2;
    c.pin_workers = false;
    c
}

/// A blocking receive with a timeout on a socket nobody writes to: it must time out, never be interrupted.
fn timed_recv_is_not_interrupted(sock: &UdpSocket, round: usize) {
    let mut b = [0u8; 16];
    match sock.recv(&mut b) {
        Ok(n) => panic!("round {round}: nobody sends to this socket, yet {n} bytes arrived"),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "round {round}: the caller's blocking recv failed with {e:?} after Server::start"
        ),
    }
}

#[test]
fn starting_a_server_does_not_interrupt_the_callers_blocking_io() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    // Before the fix every round failed: the ring-exit work signals the caller within a few milliseconds.
    for round in 0..5 {
        let srv = Server::new(config(), Echo).unwrap().start().unwrap();
        timed_recv_is_not_interrupted(&sock, round);
        timed_recv_is_not_interrupted(&sock, round);
        drop(srv);
        timed_recv_is_not_interrupted(&sock, round);
    }
}

#[test]
fn a_server_started_from_another_thread_leaves_that_thread_alone() {
    // The same from a thread that starts the server and then serves its own blocking IO (the shape of an
    // application with a control thread).
    std::thread::spawn(|| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let srv = Server::new(config(), Echo).unwrap().start().unwrap();
        for round in 0..3 {
            timed_recv_is_not_interrupted(&sock, round);
        }
        srv.shutdown();
        srv.join().unwrap();
        timed_recv_is_not_interrupted(&sock, 99);
    })
    .join()
    .unwrap();
}
