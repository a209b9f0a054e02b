// ringws demo page: echo pane, chat pane and live stats strip.
//
// Plain browser JavaScript, no build step, no dependencies. Every piece of
// text that comes from a user or from the network is put into the DOM with
// `textContent` (through `el()` below); this file never assigns innerHTML.
'use strict';

(() => {
  const LOG_CAP = 500;          // lines kept per log (echo log, each chat room)
  const RTT_WINDOW = 50;        // RTT samples kept for the sparkline / avg / p95
  const PROBE_MS = 500;         // "Measure latency" probe interval
  const STATS_MS = 1000;        // /stats poll interval
  const STATS_TIMEOUT_MS = 2500;
  const MAX_NAME = 32;          // characters (server contract)
  const MAX_ROOM = 64;          // characters (server: MAX_ROOM_CHARS)
  const MAX_TEXT_BYTES = 4096;  // UTF-8 bytes (server contract)
  const STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];

  const $ = (id) => document.getElementById(id);
  const utf8 = new TextEncoder();

  // ───────────────────────── helpers ─────────────────────────

  /** Create an element; `text` always goes through textContent. */
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function wsBase() {
    if (location.protocol === 'http:' || location.protocol === 'https:') {
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
    }
    return 'ws://127.0.0.1:1338'; // opened from file://
  }

  // A page opened as /?token=JWT hands the token on to its WebSockets: a server started with --jwt-secret or
  // --jwt-public-key requires one, and a browser cannot set an Authorization header on a WebSocket.
  function withToken(path) {
    const t = new URLSearchParams(location.search).get('token');
    return t ? `${path}?token=${encodeURIComponent(t)}` : path;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function clock(date, withMs) {
    const s = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    return withMs ? `${s}.${pad(date.getMilliseconds(), 3)}` : s;
  }

  function hexPreview(bytes, max = 8) {
    const parts = [];
    for (let i = 0; i < Math.min(bytes.length, max); i++) parts.push(pad(bytes[i].toString(16)));
    return parts.join(' ') + (bytes.length > max ? ' …' : '');
  }

  /** Append a line to a scrolling log; keeps the view pinned to the bottom
   *  only if the user had not scrolled up, and caps the length. */
  function appendLine(log, line, cap = LOG_CAP) {
    const pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(line);
    while (log.childElementCount > cap) log.firstElementChild.remove();
    if (pinned) log.scrollTop = log.scrollHeight;
  }

  function setStateBadge(badge, readyState) {
    const name = STATE_NAMES[readyState] ?? 'CLOSED';
    badge.textContent = name;
    badge.className = `state state-${name.toLowerCase()}`;
    badge.dataset.state = name;
  }

  function closeText(ev) {
    let s = `closed (code ${ev.code}${ev.wasClean ? '' : ', not clean'}`;
    if (ev.reason) s += `, reason "${ev.reason}"`;
    return s + ')';
  }

  // ───────────────────────── echo pane ─────────────────────────

  const echo = {
    ws: null,
    inflight: [],   // FIFO of { t: performance.now(), probe: bool }; echo preserves order
    rtts: [],       // last RTT_WINDOW round-trip times in ms
    probeTimer: 0,
    probeSeq: 0,
  };

  const E = {
    url: $('echo-url'), connect: $('echo-connect'), disconnect: $('echo-disconnect'),
    status: $('echo-status'), input: $('echo-input'), send: $('echo-send'),
    size: $('echo-binary-size'), sendBinary: $('echo-send-binary'), latency: $('echo-latency'),
    clear: $('echo-clear'), log: $('echo-log'), canvas: $('echo-rtt-canvas'),
    last: $('echo-rtt-last'), avg: $('echo-rtt-avg'), p95: $('echo-rtt-p95'),
  };

  E.url.value = `${wsBase()}${withToken('/echo')}`;

  /** kind: 'sent' | 'recv' | 'sys' | 'err'; body: string or array of [className, text]. */
  function echoLog(kind, body) {
    const li = el('li', kind);
    li.appendChild(el('span', 't', clock(new Date(), true)));
    li.appendChild(el('span', 'dir', { sent: '→', recv: '←', sys: '•', err: '!' }[kind]));
    const b = el('span', 'body');
    for (const [cls, text] of Array.isArray(body) ? body : [['', body]]) b.appendChild(el('span', cls, text));
    li.appendChild(b);
    appendLine(E.log, li);
  }

  function echoRefresh() {
    const rs = echo.ws ? echo.ws.readyState : WebSocket.CLOSED;
    setStateBadge(E.status, rs);
    const open = rs === WebSocket.OPEN;
    const idle = rs === WebSocket.CLOSED;
    E.connect.disabled = !idle;
    E.url.disabled = !idle;
    E.disconnect.disabled = !(open || rs === WebSocket.CONNECTING);
    E.input.disabled = !open;
    E.send.disabled = !open;
    E.sendBinary.disabled = !open;
  }

  function echoConnect() {
    if (echo.ws && echo.ws.readyState !== WebSocket.CLOSED) return;
    let ws;
    try {
      ws = new WebSocket(E.url.value.trim());
    } catch (err) {
      echoLog('err', `cannot connect: ${err.message}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    echo.ws = ws;
    echo.inflight = [];
    echoLog('sys', `connecting to ${ws.url}`);
    ws.onopen = () => {
      echoLog('sys', 'open');
      echoRefresh();
      E.input.focus();
    };
    ws.onmessage = (ev) => onEchoMessage(ev.data);
    ws.onerror = () => echoLog('err', 'connection error');
    ws.onclose = (ev) => {
      if (echo.ws !== ws) return;
      echoLog(ev.wasClean ? 'sys' : 'err', closeText(ev));
      echo.inflight = [];
      echoRefresh();
    };
    echoRefresh();
  }

  function echoDisconnect() {
    if (!echo.ws) return;
    echo.ws.close(1000, 'bye');
    echoLog('sys', 'closing');
    echoRefresh();
  }

  function echoSend(data, probe) {
    const ws = echo.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    echo.inflight.push({ t: performance.now(), probe });
    ws.send(data);
    return true;
  }

  function onEchoMessage(data) {
    const sent = echo.inflight.shift();
    if (sent) addRtt(performance.now() - sent.t);
    if (sent && sent.probe) return; // latency probes are not logged
    if (typeof data === 'string') {
      echoLog('recv', data);
    } else {
      const bytes = new Uint8Array(data);
      echoLog('recv', [['', `binary ${bytes.length} bytes`], ['hex', `  ${hexPreview(bytes)}`]]);
    }
  }

  function sendEchoText() {
    const text = E.input.value;
    if (text === '') return;
    if (echoSend(text, false)) {
      echoLog('sent', text);
      E.input.value = '';
    }
  }

  function sendEchoBinary() {
    let n = Math.floor(Number(E.size.value));
    if (!Number.isFinite(n) || n < 1) n = 1;
    n = Math.min(n, 1 << 20);
    E.size.value = String(n);
    const bytes = new Uint8Array(n);
    for (let off = 0; off < n; off += 65536) crypto.getRandomValues(bytes.subarray(off, off + 65536));
    if (echoSend(bytes, false)) {
      echoLog('sent', [['', `binary ${n} bytes`], ['hex', `  ${hexPreview(bytes)}`]]);
    }
  }

  function setProbing(on) {
    clearInterval(echo.probeTimer);
    echo.probeTimer = 0;
    if (on) {
      echo.probeTimer = setInterval(() => {
        echoSend(`ping ${++echo.probeSeq} ${Date.now()}`, true);
      }, PROBE_MS);
    }
  }

  // ── RTT figures and sparkline ──

  function addRtt(ms) {
    echo.rtts.push(ms);
    if (echo.rtts.length > RTT_WINDOW) echo.rtts.shift();
    renderRtt();
  }

  const fmtMs = (ms) => (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)) + ' ms';

  function p95(values) {
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)];
  }

  function renderRtt() {
    const r = echo.rtts;
    if (r.length === 0) {
      E.last.textContent = E.avg.textContent = E.p95.textContent = '–';
    } else {
      E.last.textContent = fmtMs(r[r.length - 1]);
      E.avg.textContent = fmtMs(r.reduce((a, b) => a + b, 0) / r.length);
      E.p95.textContent = fmtMs(p95(r));
    }
    drawSparkline();
  }

  function drawSparkline() {
    const c = E.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const g = c.getContext('2d');
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const accent = css.getPropertyValue('--accent').trim() || '#0b7fc0';
    const muted = css.getPropertyValue('--border').trim() || '#ccc';
    g.fillStyle = muted;
    g.fillRect(0, h - dpr, w, dpr); // baseline
    const r = echo.rtts;
    if (r.length === 0) {
      g.fillStyle = css.getPropertyValue('--muted').trim() || '#888';
      g.font = `${11 * dpr}px system-ui, sans-serif`;
      g.textBaseline = 'middle';
      g.fillText('round-trip times (ms) appear here', 6 * dpr, h / 2);
      return;
    }
    const top = Math.max(p95(r) * 1.25, 0.5);
    const slot = w / RTT_WINDOW;
    const barW = Math.max(1, slot * 0.7);
    const x0 = w - r.length * slot;
    g.fillStyle = accent;
    r.forEach((v, i) => {
      const bh = Math.max(2 * dpr, Math.min(1, v / top) * (h - 3 * dpr));
      g.globalAlpha = i === r.length - 1 ? 1 : 0.55;
      g.fillRect(x0 + i * slot + (slot - barW) / 2, h - dpr - bh, barW, bh);
    });
    g.globalAlpha = 1;
  }

  $('echo-connect-form').addEventListener('submit', (e) => { e.preventDefault(); echoConnect(); });
  E.disconnect.addEventListener('click', echoDisconnect);
  $('echo-send-form').addEventListener('submit', (e) => { e.preventDefault(); sendEchoText(); });
  E.sendBinary.addEventListener('click', sendEchoBinary);
  E.latency.addEventListener('change', () => setProbing(E.latency.checked));
  E.clear.addEventListener('click', () => { E.log.replaceChildren(); echo.rtts = []; renderRtt(); });
  window.addEventListener('resize', drawSparkline);
  echoRefresh();
  renderRtt();

  // ───────────────────────── chat pane ─────────────────────────

  const chat = {
    ws: null,
    myName: '',
    myNode: null,          // this server's node label when rooms span nodes (--redis); counts are per node
    wantName: '',          // name the user asked for; re-sent after a reconnect
    rooms: new Map(),      // room -> { tab, count, badge, log, unread, n }
    active: null,
    leaving: new Set(),    // rooms we left; their late events are ignored
    retry: 0,
    retryTimer: 0,
  };

  const C = {
    status: $('chat-status'), me: $('chat-me'), name: $('chat-name'), room: $('chat-room'),
    join: $('chat-join'), leave: $('chat-leave'), tabs: $('chat-rooms'), empty: $('chat-rooms-empty'),
    log: $('chat-log'), input: $('chat-input'), send: $('chat-send'), counter: $('chat-counter'),
  };

  const placeholder = el('p', 'placeholder', 'Join a room to start chatting. Open this page in a second window to talk to yourself.');
  C.log.appendChild(placeholder);

  function chatOpen() { return chat.ws && chat.ws.readyState === WebSocket.OPEN; }

  function chatSend(obj) {
    if (!chatOpen()) { notice('chat is not connected'); return false; }
    chat.ws.send(JSON.stringify(obj));
    return true;
  }

  function chatRefresh() {
    setStateBadge(C.status, chat.ws ? chat.ws.readyState : WebSocket.CLOSED);
    const ok = chatOpen() && chat.active !== null;
    C.input.disabled = !ok;
    C.leave.disabled = !ok;
    updateCounter();
    C.empty.hidden = chat.rooms.size > 0;
    placeholder.hidden = chat.rooms.size > 0;
  }

  /** A system line in one room (or the active room, or every room). */
  function notice(text, room, cls = 'sys') {
    const targets = room ? [chat.rooms.get(room)] : chat.active ? [chat.rooms.get(chat.active)] : [];
    for (const r of targets) if (r) roomLine(r, cls, null, text, Date.now());
    if (targets.length === 0) {
      placeholder.textContent = text;
      placeholder.className = `placeholder ${cls}`;
    }
  }

  function roomLine(r, cls, who, text, ts) {
    const line = el('div', `line ${cls}`);
    line.appendChild(el('span', 't', clock(new Date(ts || Date.now()), false)));
    if (who !== null) line.appendChild(el('span', 'who', who));
    line.appendChild(el('span', 'text', text));
    appendLine(r.log, line);
    if (chat.active !== r.name && (cls === 'mine' || cls === 'theirs')) {
      r.unread++;
      r.badge.textContent = String(r.unread);
      r.badge.hidden = false;
    }
  }

  function ensureRoom(name) {
    let r = chat.rooms.get(name);
    if (r) return r;
    const tab = el('button', 'tab');
    tab.type = 'button';
    tab.setAttribute('role', 'tab');
    tab.dataset.testid = 'chat-room-tab';
    tab.dataset.room = name;
    tab.appendChild(el('span', 'room-name', `#${name}`));
    const count = el('span', 'count', '');
    const badge = el('span', 'badge', '');
    badge.hidden = true;
    tab.append(count, badge);
    tab.addEventListener('click', () => selectRoom(name));
    tab.addEventListener('keydown', onTabKey);
    const log = el('div', 'room-log');
    log.setAttribute('role', 'tabpanel');
    log.setAttribute('aria-label', `Messages in ${name}`);
    log.setAttribute('aria-live', 'polite');
    log.dataset.testid = 'chat-room-log';
    log.dataset.room = name;
    log.hidden = true;
    r = { name, tab, count, badge, log, unread: 0, n: 0 };
    chat.rooms.set(name, r);
    C.tabs.appendChild(tab);
    C.log.appendChild(log);
    if (chat.active === null) selectRoom(name);
    chatRefresh();
    return r;
  }

  function setCount(r, n) {
    if (typeof n !== 'number') return;
    r.n = n;
    r.count.textContent = String(n);
    r.count.title = chat.myNode ? `${n} in room on this node (${chat.myNode})` : `${n} in room`;
  }

  function selectRoom(name) {
    chat.active = name;
    for (const r of chat.rooms.values()) {
      const on = r.name === name;
      r.tab.setAttribute('aria-selected', String(on));
      r.tab.tabIndex = on ? 0 : -1;
      r.log.hidden = !on;
      if (on) {
        r.unread = 0;
        r.badge.hidden = true;
        r.log.scrollTop = r.log.scrollHeight;
      }
    }
    if (name !== null) C.room.value = name;
    chatRefresh();
  }

  function onTabKey(e) {
    const names = [...chat.rooms.keys()];
    const i = names.indexOf(chat.active);
    let j = -1;
    if (e.key === 'ArrowRight') j = (i + 1) % names.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + names.length) % names.length;
    if (j < 0) return;
    e.preventDefault();
    selectRoom(names[j]);
    chat.rooms.get(names[j]).tab.focus();
  }

  function dropRoom(name) {
    const r = chat.rooms.get(name);
    if (!r) return;
    r.tab.remove();
    r.log.remove();
    chat.rooms.delete(name);
    if (chat.active === name) {
      chat.active = null;
      const next = chat.rooms.keys().next();
      selectRoom(next.done ? null : next.value);
    }
    chatRefresh();
  }

  function setMe(name) {
    chat.myName = name;
    C.me.textContent = name ? `you are ${name}` : '';
    if (!C.name.value) C.name.placeholder = name;
  }

  // Member counts are per node: an event from another node reports that node's members, not ours.
  function fromHere(m) {
    return typeof m.node !== 'string' || m.node === chat.myNode;
  }

  function whereCount(m) {
    return fromHere(m) ? `${m.count} here` : `${m.count} on node ${m.node}`;
  }

  function onChatMessage(raw) {
    let m;
    try { m = JSON.parse(raw); } catch { return; }
    if (!m || typeof m !== 'object') return;
    const room = typeof m.room === 'string' ? m.room : null;
    switch (m.type) {
      case 'welcome':
        setMe(String(m.name ?? ''));
        chat.myNode = typeof m.node === 'string' ? m.node : null;
        if (m.authenticated === true) {
          // The name comes from the token: the server refuses renames.
          for (const x of $('chat-name-form').elements) x.disabled = true;
        }
        break;
      case 'renamed':
        setMe(String(m.name ?? ''));
        for (const r of chat.rooms.values()) roomLine(r, 'presence', null, `you are now ${chat.myName}`);
        break;
      case 'joined': {
        if (room === null) break;
        const mine = m.name === chat.myName;
        if (chat.leaving.has(room) && !mine) break;
        chat.leaving.delete(room);
        const fresh = !chat.rooms.has(room);
        const r = ensureRoom(room);
        if (mine && fresh) selectRoom(room);
        if (fromHere(m)) setCount(r, m.count);
        const who = mine && fresh ? 'you' : String(m.name);
        roomLine(r, 'presence', null, `${who} joined #${room} (${whereCount(m)})`);
        break;
      }
      case 'left': {
        const r = room !== null && chat.rooms.get(room);
        if (!r) break;
        if (fromHere(m)) setCount(r, m.count);
        roomLine(r, 'presence', null, `${m.name} left #${room} (${whereCount(m)})`);
        break;
      }
      case 'message': {
        if (room === null || chat.leaving.has(room)) break;
        const r = ensureRoom(room);
        const mine = m.name === chat.myName;
        roomLine(r, mine ? 'mine' : 'theirs', String(m.name), String(m.text ?? ''), m.ts);
        break;
      }
      case 'error':
        notice(`error: ${m.error}`, null, 'err');
        break;
      default:
        break;
    }
  }

  function chatConnect() {
    clearTimeout(chat.retryTimer);
    let ws;
    try {
      ws = new WebSocket(`${wsBase()}${withToken('/chat')}`);
    } catch (err) {
      notice(`cannot connect: ${err.message}`, null, 'err');
      return;
    }
    chat.ws = ws;
    ws.onopen = () => {
      chat.retry = 0;
      if (chat.wantName) chatSend({ type: 'name', name: chat.wantName });
      for (const name of chat.rooms.keys()) chatSend({ type: 'join', room: name });
      chatRefresh();
    };
    ws.onmessage = (ev) => { if (typeof ev.data === 'string') onChatMessage(ev.data); };
    ws.onclose = (ev) => {
      if (chat.ws !== ws) return;
      const delay = Math.min(10000, 1000 * 2 ** chat.retry++);
      for (const r of chat.rooms.values()) {
        roomLine(r, 'err', null, `${closeText(ev)}; reconnecting in ${Math.round(delay / 1000)} s`);
      }
      chatRefresh();
      chat.retryTimer = setTimeout(chatConnect, delay);
    };
    chatRefresh();
  }

  function updateCounter() {
    const n = utf8.encode(C.input.value).length;
    C.counter.textContent = `${n}/${MAX_TEXT_BYTES}`;
    const over = n > MAX_TEXT_BYTES;
    C.counter.classList.toggle('over', over);
    C.send.disabled = C.input.disabled || over || n === 0;
  }

  $('chat-name-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = C.name.value.trim();
    if (!name || name.length > MAX_NAME) { notice(`a name is 1 to ${MAX_NAME} characters`, null, 'err'); return; }
    chat.wantName = name;
    chatSend({ type: 'name', name });
  });

  $('chat-join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const room = C.room.value.trim();
    if (!room || room.length > MAX_ROOM) { notice(`a room name is 1 to ${MAX_ROOM} characters`, null, 'err'); return; }
    if (chat.rooms.has(room)) { selectRoom(room); return; }
    chat.leaving.delete(room);
    chatSend({ type: 'join', room });
  });

  C.leave.addEventListener('click', () => {
    const room = chat.active;
    if (room === null) return;
    chatSend({ type: 'leave', room });
    chat.leaving.add(room);
    dropRoom(room);
  });

  $('chat-send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = C.input.value;
    if (!text || chat.active === null || utf8.encode(text).length > MAX_TEXT_BYTES) return;
    if (chatSend({ type: 'say', room: chat.active, text })) {
      C.input.value = '';
      updateCounter();
    }
  });
  C.input.addEventListener('input', updateCounter);

  chatRefresh();
  chatConnect();

  // ───────────────────────── stats strip ─────────────────────────

  const S = {
    connections: $('stats-connections'), in: $('stats-in'), out: $('stats-out'),
    drops: $('stats-drops'), workers: $('stats-workers'), uptime: $('stats-uptime'),
    status: $('stats-status'),
  };
  let prevStats = null; // { t, messages_in, messages_out }

  const fmtInt = (n) => (typeof n === 'number' && Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
  const fmtRate = (r) => (r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US'));
  function fmtUptime(s) {
    if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
  }

  function showStats(j, now) {
    S.connections.textContent = fmtInt(j.connections);
    S.drops.textContent = fmtInt(j.drops);
    S.drops.classList.toggle('warn', j.drops > 0);
    S.workers.textContent = fmtInt(j.workers);
    S.uptime.textContent = fmtUptime(j.uptime_s);
    const p = prevStats;
    if (p && j.messages_in >= p.messages_in && j.messages_out >= p.messages_out && now > p.t) {
      const dt = (now - p.t) / 1000;
      S.in.textContent = fmtRate((j.messages_in - p.messages_in) / dt);
      S.out.textContent = fmtRate((j.messages_out - p.messages_out) / dt);
    }
    prevStats = { t: now, messages_in: j.messages_in, messages_out: j.messages_out };
    S.status.textContent = `updated ${clock(new Date(), false)}`;
    S.status.classList.remove('error');
  }

  function statsFailed(why) {
    prevStats = null;
    for (const k of ['connections', 'in', 'out', 'drops', 'workers', 'uptime']) S[k].textContent = '–';
    S.status.textContent = `stats unavailable (${why})`;
    S.status.classList.add('error');
  }

  async function pollStats() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), STATS_TIMEOUT_MS);
    try {
      const res = await fetch('/stats', { cache: 'no-store', signal: ctl.signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const j = await res.json();
      if (!j || typeof j !== 'object') throw new Error('bad JSON');
      showStats(j, performance.now());
    } catch (err) {
      statsFailed(err.name === 'AbortError' ? 'timeout' : err.message);
    } finally {
      clearTimeout(timer);
      setTimeout(pollStats, STATS_MS);
    }
  }
  pollStats();
})();
