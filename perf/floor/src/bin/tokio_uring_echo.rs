//! TCP echo on `tokio-uring`, written the way its examples are: one task per connection, a one-shot `read` into a
//! buffer the operation owns, then `write_all` of what was read. Single-threaded (tokio-uring runs one current-thread
//! runtime whose ring is polled through epoll).
//!
//! This is the alternative ringws' design card rejects: every connection pins its own receive buffer
//! (`FLOOR_READ_BUF`, default 64 KiB, the size of ringws' ring buffers) and there is no multishot or provided-buffer
//! ring to share.
//!
//! Usage: `tokio_uring_echo ADDR` (e.g. 127.0.0.1:9111).

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

fn read_buf_size() -> usize {
    std::env::var("FLOOR_READ_BUF")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(64 * 1024)
}

async fn echo(stream: TcpStream, size: usize) {
    let mut buf = vec![0u8; size];
    loop {
        let (res, b) = stream.read(buf).await;
        let n = match res {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (res, slice) = stream.write_all(b.slice(..n)).await;
        if res.is_err() {
            return;
        }
        buf = slice.into_inner();
    }
}

fn main() {
    let addr = floor::addr_arg("tokio_uring_echo ADDR");
    let std_listener = match floor::listener(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokio_uring_echo: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let size = read_buf_size();
    let local = std_listener.local_addr().map_or(addr, |a| a);
    eprintln!("tokio_uring_echo: listening on {local}, {size}-byte read buffer per connection");
    tokio_uring::start(async move {
        let listener = TcpListener::from_std(std_listener);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio_uring::spawn(echo(stream, size));
                }
                Err(e) => eprintln!("tokio_uring_echo: accept: {e}"),
            }
        }
    });
}
