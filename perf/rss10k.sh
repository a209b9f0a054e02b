#!/bin/bash
# Server RSS with many echoing connections, one worker on CPU 0, the client on CPU 1.
#
#   perf/rss10k.sh SERVER LABEL [CONNS] [SIZE]
#
# SERVER: a ringws binary, or `uws` for uWebSockets' uws_echo (from UWS_DIR, default /tmp/uws-peer, built by
# ../shared/peers/uws/build.sh). CLIENT=loadtest (default: ringws' client, paced ramp, 4 s) or CLIENT=load_test
# (uWebSockets' own client from UWS_DIR: every connection at once, 16 s). Prints one line: RSS in KiB 0.5 s after
# start, during the echo (the peak of samples every 0.5 s, and the last one), and 2.5 s after the client left.
set -u
SERVER=$1; LABEL=$2; C=${3:-10000}; S=${4:-20}
CLIENT=${CLIENT:-loadtest}; UWS_DIR=${UWS_DIR:-/tmp/uws-peer}
LOADTEST=${LOADTEST:-$(dirname "$0")/../target/release/loadtest}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
ulimit -n 65536 2>/dev/null
if [ "$SERVER" = uws ]; then
  taskset -c 0 "$UWS_DIR/uws_echo" "$PORT" plain >/dev/null 2>&1 &
else
  taskset -c 0 "$SERVER" --workers 1 --port "$PORT" >/dev/null 2>&1 &
fi
PID=$!
sleep 0.5
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }
idle=$(rss)
if [ "$CLIENT" = load_test ]; then
  taskset -c 1 timeout 16 "$UWS_DIR/load_test" "$C" 127.0.0.1 "$PORT" 0 0 "$S" >/dev/null 2>&1 &
  samples=30
else
  taskset -c 1 "$LOADTEST" --url "ws://127.0.0.1:$PORT/echo" --conns "$C" --size "$S" --duration 4s --warmup 1s \
    >/dev/null 2>&1 &
  samples=9
fi
CL=$!
peak=0; last=0
for _ in $(seq $samples); do
  sleep 0.5; last=$(rss); [ "$last" -gt "$peak" ] && peak=$last
done
wait $CL
sleep 2.5
echo "$LABEL client=$CLIENT conns=$C size=$S idle_kib=$idle peak_kib=$peak last_kib=$last after_kib=$(rss)"
kill $PID; wait $PID 2>/dev/null
