#!/usr/bin/env python3
"""Server RSS per idle connection with permessage-deflate, as tests/idle_memory.rs measures it, for one mode.

Usage: perf/deflate-idle-memory.py MODE [CONNS]   (MODE: shared | dedicated; CONNS default 10000)

Starts `ringws --workers 1 --compression MODE` pinned to CPU 0, warms its receive ring with one 8 MiB echo, opens
CONNS connections that offer `permessage-deflate; client_max_window_bits` (as browsers do) and reports
  idle:      RSS growth per connection that negotiated and never sent;
  used+idle: after every connection sent one compressed 2 KiB JSON-like text (its own context, masked) and got
             its compressed echo, then 2.5 s idle (dedicated mode drops a connection's zlib streams after a second
             idle, keeping the window history);
  active:    the peak right after the echoes, before the idle sweep (RSS sampled at once).
Prints one JSON line."""
import json, os, socket, subprocess, sys, time, zlib

MODE = sys.argv[1]
CONNS = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
HERE = os.path.dirname(os.path.abspath(__file__))
RINGWS = os.environ.get("RINGWS", f"{os.path.dirname(HERE)}/target/release/ringws")


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upgrade(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(4096)
        assert b, "closed in the handshake"
        head += b
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    ext = [l for l in head.decode().split("\r\n") if l.lower().startswith("sec-websocket-extensions")][0]
    return s, ext


def frame(payload, opcode, rsv1, mask=b"\0\0\0\0"):
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n < 65536:
        h = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    return h + mask + payload  # zero mask: payload unchanged


def read_frame(s):
    def exact(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            assert c, "closed"
            b += c
        return b
    h = exact(2)
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(exact(2), "big")
    elif n == 127:
        n = int.from_bytes(exact(8), "big")
    return h[0], exact(n)


def json_text(n, seed):
    out, x = [], seed
    while sum(map(len, out)) < n:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append('{"id":%d,"user":"user_%d","event":"click","ts":%d},' % (x % 100000, x % 500, 1764000000 + x))
    return "".join(out)[:n].encode()


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", "0", RINGWS, "--workers", "1", "--port", str(port), "--compression",
                            MODE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        warm = [upgrade(port)[0] for _ in range(100)]
        big = os.urandom(60 << 10)  # incompressible: echoed plain, touches every receive buffer
        for _ in range(140):
            warm[0].sendall(frame(big, 2, False))
            read_frame(warm[0])
        time.sleep(0.3)
        before = rss(srv.pid)
        conns, ext = [], None
        for _ in range(CONNS):
            s, ext = upgrade(port)
            conns.append(s)
        time.sleep(2.5)
        idle = rss(srv.pid)
        wbits = 15
        if "client_max_window_bits=" in ext:
            wbits = int(ext.split("client_max_window_bits=")[1].split(";")[0].strip())
        for i, s in enumerate(conns):
            c = zlib.compressobj(2, zlib.DEFLATED, -max(wbits, 9))
            msg = json_text(2048, i)
            body = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
            s.sendall(frame(body[:-4], 1, True))
            b0, p = read_frame(s)
            assert b0 & 0x40, "echo not compressed"
            d = zlib.decompressobj(-15)
            assert d.decompress(p + b"\0\0\xff\xff") == msg
        active = rss(srv.pid)
        time.sleep(2.5)
        used_idle = rss(srv.pid)
        n = CONNS
        print(json.dumps(dict(mode=MODE, conns=n, extensions=ext, rss_before_mib=round(before / 2**20, 1),
                              rss_idle_mib=round(idle / 2**20, 1), rss_active_mib=round(active / 2**20, 1),
                              rss_used_idle_mib=round(used_idle / 2**20, 1),
                              idle_bytes_per_conn=round((idle - before) / n),
                              active_bytes_per_conn=round((active - before) / n),
                              used_idle_bytes_per_conn=round((used_idle - before) / n))))
    finally:
        srv.terminate()
        srv.wait()


main()
