#!/usr/bin/env python3
"""`mailtun serve` benchmarks (issue 14), against the harness (scripts/harness).

- connections per second through the listener: connect until the client can send its
  first IMAP command as an authenticated client (`listen_preauth = true`: the `* PREAUTH`
  line, after the upstream GSSAPI session is established), sequentially and 8 at once;
- memory per idle relayed connection: N IMAP connections logged in (local LOGIN, upstream
  session established, relay running) and left idle; the growth of the serve process's
  RSS (VmRSS) divided by N (target: under 256 KiB each);
- the 20 MB FETCH session through the listener against the same through `mailtun tunnel`.

Python 3 stdlib only. Environment: HARNESS_ENV (the harness's env file), MAILTUN (the
binary, a release build for meaningful numbers), IDLE (default 200), RUNS (default 5).
Prints a Markdown table on stdout, after a line with the load average at the start and
the end (the CPUs may be shared) and the medians' min-max spread.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


H = load_env(os.environ["HARNESS_ENV"])
MAILTUN = os.environ.get("MAILTUN", "target/release/mailtun")
IDLE = int(os.environ.get("IDLE", "200"))
RUNS = int(os.environ.get("RUNS", "5"))


def log(msg):
    print(f"serve_bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def config(dir, extra):
    path = os.path.join(dir, "config.toml")
    with open(path, "w") as f:
        f.write(
            f'[accounts.test]\nhost = "{H["MAIL_HOST"]}"\nconnect = "{H["MAIL_ADDR"]}"\n'
            f'ca_file = "{H["CA_FILE"]}"\nuser = "alice"\ntimeout_secs = 30\n{extra}\n'
            f'[accounts.test.gssapi]\nccache = "{H["ALICE_CCACHE"]}"\n'
        )
    return path


def start_serve(cfg):
    env = dict(os.environ, KRB5_CONFIG=H["KRB5_CONFIG"])
    p = subprocess.Popen(
        [MAILTUN, "--config", cfg, "serve"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    line = p.stderr.readline().decode()
    assert line.startswith("mailtun: serving"), line
    threading.Thread(target=p.stderr.read, daemon=True).start()
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_until(sock, marker, buf=b""):
    while marker not in buf:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError(f"EOF before {marker!r}: {buf[-200:]!r}")
        buf += chunk
    return buf


def preauth_connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    read_until(s, b"\r\n")
    s.sendall(b"z LOGOUT\r\n")
    read_until(s, b"z OK")
    s.close()


def connections_per_second(dir):
    port = free_port()
    p = start_serve(config(dir, f'listen = "127.0.0.1:{port}"\nlisten_preauth = true\nmax_connections = 64'))
    try:
        n = 100
        t = time.perf_counter()
        for _ in range(n):
            preauth_connect(port)
        seq = n / (time.perf_counter() - t)
        threads = []
        t = time.perf_counter()
        for _ in range(8):
            th = threading.Thread(target=lambda: [preauth_connect(port) for _ in range(n // 8)])
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        par = (n // 8 * 8) / (time.perf_counter() - t)
        return seq, par
    finally:
        p.terminate()
        p.wait()


def idle_memory(dir):
    port = free_port()
    p = start_serve(config(dir, f'listen = "127.0.0.1:{port}"\nmax_connections = {IDLE + 10}'))
    try:
        # One connection first, so that one-time allocations are not counted.
        warm = socket.create_connection(("127.0.0.1", port))
        read_until(warm, b"\r\n")
        warm.sendall(b"a LOGIN alice x\r\n")
        read_until(warm, b"a OK")
        time.sleep(0.5)
        before = rss_kib(p.pid)
        socks = []
        refused = ""
        for i in range(IDLE):
            s = socket.create_connection(("127.0.0.1", port))
            try:
                read_until(s, b"\r\n")
                s.sendall(b"a LOGIN alice x\r\n")
                read_until(s, b"a OK")
            except RuntimeError as e:
                # The server's own connection limit: measure what was reached.
                refused = str(e)[:160]
                s.close()
                break
            socks.append(s)
        time.sleep(1.0)
        after = rss_kib(p.pid)
        n = len(socks)
        for s in socks:
            s.close()
        warm.close()
        if refused:
            log(f"stopped at {n} idle connections: {refused}")
        return before, after, n, (after - before) / max(n, 1)
    finally:
        p.terminate()
        p.wait()


FETCH = b"a SELECT INBOX\r\nb UID FETCH " + H["BIG_MESSAGE_UID"].encode() + b" BODY.PEEK[]\r\n"


def fetch_session(sock_send, sock_recv):
    sock_send(FETCH)
    n = 0
    tail = b""
    while b"\r\nb OK" not in tail:
        chunk = sock_recv()
        if not chunk:
            raise RuntimeError("EOF during FETCH")
        n += len(chunk)
        tail = (tail + chunk)[-256:]
    sock_send(b"c LOGOUT\r\n")
    return n


def fetch_through_listener(port):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    read_until(s, b"\r\n")
    s.sendall(b"l LOGIN alice x\r\n")
    read_until(s, b"l OK")
    n = fetch_session(s.sendall, lambda: s.recv(1 << 20))
    while s.recv(1 << 20):
        pass
    s.close()
    return (time.perf_counter() - t) * 1000, n


def fetch_through_tunnel(cfg):
    env = dict(os.environ, KRB5_CONFIG=H["KRB5_CONFIG"])
    t = time.perf_counter()
    p = subprocess.Popen(
        [MAILTUN, "--config", cfg, "tunnel", "test"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    fd = p.stdout.fileno()
    first = b""
    while b"\r\n" not in first:
        first += os.read(fd, 65536)

    def send(b):
        p.stdin.write(b)
        p.stdin.flush()

    n = fetch_session(send, lambda: os.read(fd, 1 << 20))
    p.stdin.close()
    while os.read(fd, 1 << 20):
        pass
    p.wait()
    return (time.perf_counter() - t) * 1000, n


def fetch_compare(dir):
    port = free_port()
    cfg = config(dir, f'listen = "127.0.0.1:{port}"')
    p = start_serve(cfg)
    try:
        listener, tunnel = [], []
        # Alternate which goes first: the one right after the other's session shares the
        # CPUs with that session's teardown (Dovecot's processes ending), a fixed order
        # biased the ratio by ~0.15-0.2 on 2 CPUs.
        for i in range(RUNS):
            if i % 2 == 0:
                listener.append(fetch_through_listener(port)[0])
                tunnel.append(fetch_through_tunnel(cfg)[0])
            else:
                tunnel.append(fetch_through_tunnel(cfg)[0])
                listener.append(fetch_through_listener(port)[0])
        return listener, tunnel
    finally:
        p.terminate()
        p.wait()


def main():
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as dir:
        seq, par = connections_per_second(dir)
        before, after, n_idle, per = idle_memory(dir)
        lis_runs, tun_runs = fetch_compare(dir)
    lis, tun = statistics.median(lis_runs), statistics.median(tun_runs)
    load1 = os.getloadavg()
    print(f"Load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at the start, "
          f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at the end; {time.perf_counter() - t0:.0f} s; "
          f"{MAILTUN}. FETCH min-max, ms: listener {min(lis_runs):.1f}-{max(lis_runs):.1f}, "
          f"tunnel {min(tun_runs):.1f}-{max(tun_runs):.1f} (sessions interleaved).\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| connections/s to PREAUTH through the listener (upstream GSSAPI each), one at a time | {seq:.0f} |")
    print(f"| connections/s, 8 clients at once | {par:.0f} |")
    print(f"| RSS before / after {n_idle} idle relayed IMAP connections (asked: {IDLE}), KiB | {before} / {after} |")
    print(f"| RSS growth per idle relayed connection, KiB (target < 256) | {per:.1f} |")
    print(f"| 20 MB FETCH session (LOGIN/PREAUTH, SELECT, UID FETCH, LOGOUT), median of {RUNS}, ms: listener | {lis:.1f} |")
    print(f"| same through `mailtun tunnel` (process spawn included), ms | {tun:.1f} |")
    print(f"| listener / tunnel | {lis / tun:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
