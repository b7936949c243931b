#!/usr/bin/env python3
"""mailtun benchmarks side by side with peer tools (issue 7). Run through scripts/bench.

One driver speaks IMAP on each tool's stdin/stdout and times every tool the same way:
the clock starts just before the tool is spawned; "first line" is when its first line
arrives (`* PREAUTH` for tunnels, the server greeting for TLS clients); "LOGOUT" is when
the process has exited after a completed LOGOUT (the tagged OK, or EOF for the imtest
tunnel, which swallows LOGOUT). FETCH and APPEND are whole sessions: spawn, (LOGIN for
the unauthenticated TLS peers), the work, LOGOUT, exit. CPU time comes from wait4()
on the tool's process (its own plus its reaped children's) and peak RSS from VmHWM in
/proc (the largest over the tool's process tree, read after the transfer), so nothing
is added around the tool. Round trips are counted by an in-process TCP proxy between the tool and
Dovecot (see count_round_trips).

Python 3 stdlib only: nothing to build or install, and the driver's own cost (a few
hundred microseconds a command, large reads straight into a reused buffer) is the same
for every tool.

Environment (scripts/bench sets it): HARNESS_ENV (the harness's env file), MAILTUN
(the release binary), RUNS (default 9), RUNS_200M (default 3), OUT (results .md path),
IMTEST_TUNNEL (bench/imtest-tunnel).
"""

import base64
import datetime
import hashlib
import json
import os
import platform
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
TIMEOUT = 300.0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


class Session:
    """A tool spawned with its stdin/stdout as the IMAP connection."""

    def __init__(self, argv, env, stderr_path):
        self.err = open(stderr_path, "ab")
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, env=env, bufsize=0)
        self.out = self.p.stdout
        self.wfd = self.p.stdin.fileno()
        self.buf = bytearray()
        self.eof = False
        self.chunk = bytearray(1 << 20)
        self.watchdog = threading.Timer(TIMEOUT, self.p.kill)
        self.watchdog.start()
        self.rusage = None
        self.t_exit = None

    def now(self):
        return time.perf_counter() - self.t0

    def _fill(self):
        n = self.out.readinto(self.chunk)
        if not n:
            self.eof = True
            return False
        self.buf += memoryview(self.chunk)[:n]
        return True

    def readline(self):
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line or None

    def skip_literal(self, n, hasher=None):
        """Reads n bytes of a literal without keeping them (optionally hashing them)."""
        take = min(n, len(self.buf))
        if hasher:
            hasher.update(self.buf[:take])
        del self.buf[:take]
        n -= take
        mv = memoryview(self.chunk)
        while n > 0:
            got = self.out.readinto(mv[:min(n, len(self.chunk))])
            if not got:
                raise RuntimeError("EOF inside a literal")
            if hasher:
                hasher.update(mv[:got])
            n -= got

    def send(self, data):
        mv = memoryview(data)
        while mv:
            n = os.write(self.wfd, mv)
            mv = mv[n:]

    def response(self, tag, eof_ok=False, hasher=None):
        """Reads up to the tagged reply; returns (tagged line, total literal bytes)."""
        lit = 0
        t = tag.encode() + b" "
        while True:
            line = self.readline()
            if line is None:
                if eof_ok:
                    return None, lit
                raise RuntimeError(f"EOF before the reply to {tag}")
            while (m := LITERAL.search(line)):
                n = int(m.group(1))
                self.skip_literal(n, hasher)
                lit += n
                more = self.readline()
                if more is None:
                    raise RuntimeError("EOF after a literal")
                line = more
            if line.startswith(t):
                if not line[len(t):].startswith(b"OK"):
                    raise RuntimeError(f"{tag} failed: {line[:200]!r}")
                return line, lit

    def command(self, tag, text, **kw):
        self.send(f"{tag} {text}\r\n".encode())
        return self.response(tag, **kw)

    def finish(self, logout_eof):
        """LOGOUT, close stdin, read to EOF, reap; returns the time of exit."""
        self.send(b"z LOGOUT\r\n")
        self.response("z", eof_ok=logout_eof)
        self.p.stdin.close()
        while self._fill():
            pass
        _, status, ru = os.wait4(self.p.pid, 0)
        self.t_exit = self.now()
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        self.watchdog.cancel()
        self.err.close()
        return self.t_exit

    def peak_rss_mib(self):
        """Largest VmHWM (peak resident set) over the tool's live process tree, in MiB.

        Read while the tool still runs (after the transfer, before LOGOUT): wait4()'s
        ru_maxrss is no use here, since Linux carries the forking driver's own RSS over
        into the child's figure."""
        best, todo = 0, [self.p.pid]
        while todo:
            pid = todo.pop()
            try:
                for l in open(f"/proc/{pid}/status"):
                    if l.startswith("VmHWM:"):
                        best = max(best, int(l.split()[1]))
                for tid in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in open(f"/proc/{pid}/task/{tid}/children").read().split()]
            except (OSError, ValueError):
                pass
        return best / 1024.0

    def abort(self):
        self.watchdog.cancel()
        try:
            self.p.kill()
            self.p.wait()
        except Exception:
            pass
        self.err.close()


class Tool:
    def __init__(self, key, label, argv_fn, tunnel, logout_eof=False):
        self.key, self.label, self.argv_fn = key, label, argv_fn
        self.tunnel, self.logout_eof = tunnel, logout_eof

    def argv(self, port_for=None):
        return self.argv_fn(port_for or (lambda p: p))


class Bench:
    def __init__(self):
        self.h = load_env(os.environ["HARNESS_ENV"])
        self.mailtun = os.environ["MAILTUN"]
        self.runs = int(os.environ.get("RUNS", "9"))
        self.runs_200m = int(os.environ.get("RUNS_200M", "3"))
        self.work = os.environ.get("WORK", self.h["REALM_DIR"] + "/bench")
        os.makedirs(self.work, exist_ok=True)
        self.errlog = os.path.join(self.work, "tools.stderr")
        self.env = dict(os.environ)
        self.env["KRB5_CONFIG"] = self.h["KRB5_CONFIG"]
        self.env["KRB5CCNAME"] = self.h["ALICE_CCACHE"]
        self.env.pop("MAILTUN_CONFIG", None)
        self.big = open(self.h["BIG_MESSAGE"], "rb").read()
        self.big_sha = hashlib.sha256(self.big).hexdigest()
        self.results = {}  # (measure, tool) -> list of values
        self.size200 = 200 * 1024 * 1024
        self.startup_tool = "not run"
        self.notes = []
        a, host, ca = self.h["MAIL_ADDR"], self.h["MAIL_HOST"], self.h["CA_FILE"]
        tls_port, plain_port = int(self.h["IMAPS_PORT"]), int(self.h["IMAP_PORT"])
        self.tls_port, self.plain_port = tls_port, plain_port
        imtest_tunnel = os.environ.get("IMTEST_TUNNEL", os.path.join(HERE, "imtest-tunnel"))

        def mailtun_argv(method, binary=None):
            def f(port_for):
                cfg = self.config(method, port_for(plain_port), port_for(tls_port))
                return [binary or self.mailtun, "--config", cfg, "tunnel", "bench"]
            return f

        self.tools = [
            Tool("openssl", "openssl s_client (TLS only)",
                 lambda pf: ["openssl", "s_client", "-quiet", "-connect", f"{a}:{pf(tls_port)}",
                             "-servername", host, "-CAfile", ca], tunnel=False),
            Tool("socat", "socat OPENSSL (TLS only)",
                 lambda pf: ["socat", "-", f"OPENSSL:{a}:{pf(tls_port)},cafile={ca},commonname={host}"],
                 tunnel=False),
            Tool("imtest", "imtest -x + socat (GSSAPI, SSL port)",
                 lambda pf: [imtest_tunnel, host, str(pf(tls_port)), self.h["USER"]],
                 tunnel=True, logout_eof=True),
            Tool("mt_ssl", "mailtun (GSSAPI, SSL port)", mailtun_argv("implicit"), tunnel=True),
            Tool("mt_starttls", "mailtun (GSSAPI, STARTTLS)", mailtun_argv("starttls"), tunnel=True),
        ]
        other = os.environ.get("MAILTUN_COMPARE")
        if other:  # another build, e.g. before a change, run side by side on the SSL port
            self.tools.append(Tool("mt_compare", f"mailtun {os.environ.get('MAILTUN_COMPARE_LABEL', 'compare')} (GSSAPI, SSL port)",
                                   mailtun_argv("implicit", other), tunnel=True))
        self.by_key = {t.key: t for t in self.tools}

    def config(self, method, plain_port, tls_port):
        path = os.path.join(self.work, f"mailtun-{method}-{plain_port}-{tls_port}.toml")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(f"""[accounts.bench]
protocol = "imap"
host = "{self.h['MAIL_HOST']}"
connect = "{self.h['MAIL_ADDR']}"
plain_port = {plain_port}
tls_port = {tls_port}
tls = ["{method}"]
ca_file = "{self.h['CA_FILE']}"
user = "{self.h['USER']}"
auth = ["gssapi"]

[accounts.bench.gssapi]
ccache = "{self.h['ALICE_CCACHE']}"
""")
        return path

    def record(self, measure, key, value):
        self.results.setdefault((measure, key), []).append(value)

    # -- sessions ---------------------------------------------------------------------

    def open(self, tool, login, port_for=None):
        s = Session(tool.argv(port_for), self.env, self.errlog)
        first = s.readline()
        t_first = s.now()
        want = b"* PREAUTH" if tool.tunnel else b"* OK"
        if not first or not first.startswith(want):
            s.abort()
            raise RuntimeError(f"{tool.key}: first line {first!r}")
        if login and not tool.tunnel:
            s.command("l", f'LOGIN {self.h["USER"]} "{self.h["PASSWORD"]}"')
        return s, t_first

    def connect_logout(self, tool):
        s, t_first = self.open(tool, login=False)
        t_exit = s.finish(tool.logout_eof)
        self.record("first_line", tool.key, t_first)
        self.record("logout", tool.key, t_exit)

    def fetch(self, tool, mailbox, uid, size, measure, verify=False):
        s, _ = self.open(tool, login=True)
        s.command("a", f"SELECT {mailbox}")
        hasher = hashlib.sha256() if verify else None
        _, lit = s.command("b", f"UID FETCH {uid} BODY.PEEK[]", hasher=hasher)
        rss = s.peak_rss_mib()
        t = s.finish(tool.logout_eof)
        if lit != size:
            raise RuntimeError(f"{tool.key}: fetched {lit} bytes, expected {size}")
        if verify and mailbox == "INBOX" and hasher.hexdigest() != self.big_sha:
            raise RuntimeError(f"{tool.key}: the fetched message differs from BIG_MESSAGE")
        if measure:
            ru = s.rusage
            self.record(measure, tool.key, t)
            self.record(measure + "_cpu", tool.key, ru.ru_utime + ru.ru_stime)
            self.record(measure + "_rss", tool.key, rss)

    def append(self, tool, mailbox, message, measure):
        s, _ = self.open(tool, login=True)
        s.send(f"c APPEND {mailbox} {{{len(message)}}}\r\n".encode())
        line = s.readline()
        if not line or not line.startswith(b"+"):
            s.abort()
            raise RuntimeError(f"{tool.key}: APPEND not accepted: {line!r}")
        s.send(message)
        s.send(b"\r\n")
        reply, _ = s.response("c")
        rss = s.peak_rss_mib()
        t = s.finish(tool.logout_eof)
        if measure:
            ru = s.rusage
            self.record(measure, tool.key, t)
            self.record(measure + "_cpu", tool.key, ru.ru_utime + ru.ru_stime)
            self.record(measure + "_rss", tool.key, rss)
        m = re.search(rb"APPENDUID \d+ (\d+)", reply)
        return int(m.group(1)) if m else None

    def admin(self, *commands, ok_fail=()):
        """Untimed housekeeping through mailtun over the SSL port."""
        s, _ = self.open(self.by_key["mt_ssl"], login=False)
        out = []
        for i, c in enumerate(commands):
            tag = f"h{i}"
            try:
                out.append(s.command(tag, c))
            except RuntimeError:
                if c.split()[0] not in ok_fail:
                    raise
                out.append(None)
        s.finish(False)
        return out

    def empty(self, mailbox):
        self.admin(f"SELECT {mailbox}", "STORE 1:* +FLAGS.SILENT (\\Deleted)", "EXPUNGE",
                   ok_fail=("STORE", "EXPUNGE"))

    # -- round trips --------------------------------------------------------------------

    def count_round_trips(self, tool):
        """Round trips from connect to the first line, counted by a TCP proxy.

        The proxy records each read as client->server or server->client. A round trip is
        one server flight that answers a client flight (the direction turns from C->S to
        S->C); the unsolicited greeting on the plain port and the TCP handshake itself are
        not counted. The proxy is only used for this count, never for timing."""
        target = (self.h["MAIL_ADDR"], None)
        events, lock = [], threading.Lock()
        listeners = {}
        for port in (self.plain_port, self.tls_port):
            ls = socket.socket()
            ls.bind((self.h["MAIL_ADDR"], 0))
            ls.listen(4)
            listeners[port] = ls
        stop = threading.Event()

        def pump(ls, port):
            sel = selectors.DefaultSelector()
            sel.register(ls, selectors.EVENT_READ, "listen")
            pairs = {}
            while not stop.is_set():
                for k, _ in sel.select(0.05):
                    if k.data == "listen":
                        c, _ = ls.accept()
                        u = socket.create_connection((target[0], port))
                        for x in (c, u):
                            x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        pairs[c], pairs[u] = (u, "C"), (c, "S")
                        sel.register(c, selectors.EVENT_READ, "data")
                        sel.register(u, selectors.EVENT_READ, "data")
                        continue
                    src = k.fileobj
                    dst, d = pairs[src]
                    try:
                        data = src.recv(1 << 16)
                    except OSError:
                        data = b""
                    if not data:
                        for x in (src, dst):
                            try:
                                sel.unregister(x)
                            except (KeyError, ValueError):
                                pass
                            x.close()
                        continue
                    with lock:
                        events.append((d, len(data)))
                    dst.sendall(data)
            sel.close()
            ls.close()

        threads = [threading.Thread(target=pump, args=(ls, p), daemon=True)
                   for p, ls in listeners.items()]
        for t in threads:
            t.start()
        ports = {p: ls.getsockname()[1] for p, ls in listeners.items()}
        try:
            s, _ = self.open(tool, login=False, port_for=lambda p: ports[p])
            with lock:
                snap = list(events)
            s.finish(tool.logout_eof)
        finally:
            stop.set()
            for t in threads:
                t.join()
        flights = []
        for d, _ in snap:
            if not flights or flights[-1] != d:
                flights.append(d)
        rts = sum(1 for i in range(1, len(flights)) if flights[i] == "S" and flights[i - 1] == "C")
        self.record("round_trips", tool.key, rts)
        self.record("flights", tool.key, "".join(flights))

    # -- start-up -------------------------------------------------------------------------

    def startup(self):
        cfg = self.config("implicit", self.plain_port, self.tls_port)
        cmds = {
            "version": [self.mailtun, "--version"],
            # loads and checks the whole config, then fails on the unknown account (exit 3)
            "config": [self.mailtun, "--config", cfg, "tunnel", "no-such-account"],
            "true": ["/bin/true"],
        }
        hf = shutil.which("hyperfine")
        for key, argv in cmds.items():
            if hf:
                out = os.path.join(self.work, f"hyperfine-{key}.json")
                q = " ".join(argv)
                subprocess.run([hf, "-N", "--warmup", "10", "--runs", "100", "-i",
                                "--export-json", out, q],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = json.load(open(out))["results"][0]
                self.record("startup_" + key, "mailtun", r["median"])
            else:
                for _ in range(100):
                    t0 = time.perf_counter()
                    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    self.record("startup_" + key, "mailtun", time.perf_counter() - t0)
        self.startup_tool = "hyperfine -N (100 runs, 10 warm-up)" if hf else "100 spawns, median"

    # -- the run --------------------------------------------------------------------------

    def make_200m(self):
        path = os.path.join(self.work, "message-200m.eml")
        target = 200 * 1024 * 1024
        if not os.path.exists(path) or os.path.getsize(path) < target:
            head = (b"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n"
                    b"Subject: 200 MB benchmark message\r\nMessage-ID: <bench-200m@example.test>\r\n"
                    b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n")
            block = base64.encodebytes(os.urandom(57 * 4096)).replace(b"\n", b"\r\n")
            with open(path, "wb") as f:
                f.write(head)
                n = len(head)
                while n < target:
                    f.write(block)
                    n += len(block)
        return open(path, "rb").read()

    def run(self):
        phases = set(os.environ.get("PHASES", "rt,logout,fetch20,append20,fetch200,startup").split(","))
        t_start = time.perf_counter()
        runs = self.runs
        order = self.tools
        log("warm-up and check: one untimed session per tool, the FETCH verified byte for byte")
        uid = self.h["BIG_MESSAGE_UID"]
        self.admin("CREATE bench", ok_fail=("CREATE",))
        self.empty("bench")
        for t in order:
            self.fetch(t, "INBOX", uid, len(self.big), None, verify=True)

        if "rt" in phases:
            log(f"round trips connect -> first line (TCP proxy), {len(order)} tools")
            for t in order:
                self.count_round_trips(t)
        if "logout" in phases:
            log(f"connect -> first line -> LOGOUT: {runs} runs x {len(order)} tools, interleaved")
            for _ in range(runs):
                for t in order:
                    self.connect_logout(t)
        if "fetch20" in phases:
            log(f"SELECT + UID FETCH of the {len(self.big)/1e6:.1f} MB message: {runs} runs x {len(order)} tools")
            for _ in range(runs):
                for t in order:
                    self.fetch(t, "INBOX", uid, len(self.big), "fetch20")
        if "append20" in phases:
            log(f"APPEND of a {len(self.big)/1e6:.1f} MB message to the mailbox `bench` (emptied after each): {runs} runs x {len(order)} tools")
            for _ in range(runs):
                for t in order:
                    self.append(t, "bench", self.big, "append20")
                    self.empty("bench")
        if "fetch200" in phases:
            log("200 MB: generating the message, APPENDing it to `bench-200m` once")
            big200 = self.make_200m()
            self.admin("DELETE bench-200m", "CREATE bench-200m", ok_fail=("DELETE",))
            uid200 = self.append(self.by_key["mt_ssl"], "bench-200m", big200, None)
            log(f"200 MB FETCH: {self.runs_200m} runs x socat, mailtun (SSL port)")
            for _ in range(self.runs_200m):
                for k in ("socat", "mt_ssl", "mt_compare"):
                    if k not in self.by_key:
                        continue
                    self.fetch(self.by_key[k], "bench-200m", uid200, len(big200), "fetch200")
            self.size200 = len(big200)
            del big200
            self.admin("DELETE bench-200m", "DELETE bench", ok_fail=("DELETE",))
        if "startup" in phases:
            log("start-up: mailtun --version, config loading")
            self.startup()
        self.elapsed = time.perf_counter() - t_start

    # -- the report -------------------------------------------------------------------------

    def med(self, measure, key):
        v = self.results.get((measure, key))
        if not v:
            return None
        if isinstance(v[0], str):
            return max(set(v), key=v.count)
        return statistics.median(v)

    def report(self):
        ms = lambda x: "—" if x is None else f"{x*1000:,.0f}" if x >= 0.1 else f"{x*1000:.1f}"
        mib = lambda x: "—" if x is None else f"{x:.1f}"
        num = lambda x: "—" if x is None else str(x)
        ratio = lambda a, b: "—" if a is None or not b else f"{a/b:.2f}x"
        keys = [t.key for t in self.tools]
        rows = [
            ("time to first line, ms (PREAUTH / greeting)", "first_line", ms),
            ("connect → LOGOUT done, process exited, ms", "logout", ms),
            ("round trips connect → first line (TCP handshake not counted)", "round_trips", num),
            (f"20 MB FETCH session (SELECT + UID FETCH {len(self.big):,} B), ms", "fetch20", ms),
            ("  CPU time of the tool's process(es) during it, ms", "fetch20_cpu", ms),
            ("  peak RSS during it, MiB", "fetch20_rss", mib),
            (f"20 MB APPEND session ({len(self.big):,} B), ms", "append20", ms),
            ("  CPU time during it, ms", "append20_cpu", ms),
            ("  peak RSS during it, MiB", "append20_rss", mib),
            (f"200 MB FETCH session ({self.size200:,} B), ms", "fetch200", ms),
            ("  CPU time during it, ms", "fetch200_cpu", ms),
            ("  peak RSS during it, MiB", "fetch200_rss", mib),
        ]
        lines = []
        P = lines.append
        today = datetime.date.today().isoformat()
        cpu = "?"
        try:
            for l in open("/proc/cpuinfo"):
                if l.startswith("model name"):
                    cpu = l.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        P(f"## mailtun benchmarks, {today}")
        P("")
        P(f"Machine: {os.cpu_count()} CPUs (`nproc` {len(os.sched_getaffinity(0))}), {cpu}, "
          f"kernel {platform.release()}; Dovecot and the KDC of scripts/harness on "
          f"{self.h['MAIL_ADDR']}. mailtun {self.version()} (release build).")
        P(f"Medians of {self.runs} runs (200 MB: {self.runs_200m}), tools interleaved run by run. "
          f"The TLS-only peers log in with `LOGIN alice PASSWORD` inside TLS before SELECT/APPEND "
          f"(they cannot do GSSAPI); the tunnels are already authenticated (PREAUTH).")
        P("")
        head = "| measurement | " + " | ".join(t.label for t in self.tools) + \
               " | mailtun SSL / socat | mailtun SSL / openssl | mailtun SSL / imtest |"
        P(head)
        P("|" + "---|" * (len(keys) + 4))
        for label, m, f in rows:
            vals = [self.med(m, k) for k in keys]
            cells = [f(v) for v in vals]
            mt = self.med(m, "mt_ssl")
            rs = [ratio(mt, self.med(m, k)) if m != "round_trips" else "—"
                  for k in ("socat", "openssl", "imtest")]
            P(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")
        P("")
        fl = {k: self.med("flights", k) for k in keys}
        P("Flights seen by the counting proxy before the first line (C = client→server, "
          "S = server→client; a round trip is each C followed by S): " +
          ", ".join(f"{t.label}: `{fl[t.key]}`" for t in self.tools) + ".")
        P("")
        sv, sc, st = (self.med("startup_" + k, "mailtun") for k in ("version", "config", "true"))
        P(f"Start-up ({self.startup_tool}): `mailtun --version` {ms(sv)} ms; "
          f"`mailtun --config FILE tunnel no-such-account` (loads and checks the config) {ms(sc)} ms; "
          f"`/bin/true` {ms(st)} ms (the cost of spawning any process here).")
        P("")
        P("### Targets")
        P("")
        fl_o, fl_s = self.med("first_line", "openssl"), self.med("first_line", "socat")
        floor = min(x for x in (fl_o, fl_s, float("inf")) if x)
        pre = self.med("first_line", "mt_ssl")
        f_mt, f_socat = self.med("fetch20", "mt_ssl"), self.med("fetch20", "socat")
        r20, r200 = self.med("fetch20_rss", "mt_ssl"), self.med("fetch200_rss", "mt_ssl")
        all20 = (self.results.get(("fetch20_rss", "mt_ssl"), [])
                 + self.results.get(("fetch20_rss", "mt_starttls"), []))
        r20s = max(all20) if all20 else None

        def t(name, ok, meas):
            try:
                return (name, ok(), meas())
            except TypeError:
                return (name, None, "not measured")
        targets = [
            t(f"time to PREAUTH over the SSL port ≤ 1.5x the bare TLS greeting "
              f"(fastest of openssl/socat, {ms(floor)} ms)", lambda: pre / floor <= 1.5,
              lambda: f"{ms(pre)} ms = {pre/floor:.2f}x"),
            t("20 MB FETCH session ≤ 1.1x socat", lambda: f_mt / f_socat <= 1.1,
              lambda: f"{ms(f_mt)} ms vs {ms(f_socat)} ms = {f_mt/f_socat:.2f}x"),
            t("peak RSS during the 20 MB relay ≤ 10 MiB", lambda: r20s <= 10,
              lambda: f"median {mib(r20)} MiB, max over all runs and both TLS methods {mib(r20s)} MiB"),
            t("peak RSS flat from 20 MB to 200 MB (grows < 1 MiB)", lambda: r200 - r20 < 1.0,
              lambda: f"{mib(r20)} → {mib(r200)} MiB"),
            t("`mailtun --version` < 5 ms", lambda: sv < 0.005, lambda: f"{ms(sv)} ms"),
            t("config loading < 5 ms", lambda: sc < 0.005, lambda: f"{ms(sc)} ms"),
        ]
        P("| target | met | measured |")
        P("|---|---|---|")
        for name, ok, meas in targets:
            P(f"| {name} | {'—' if ok is None else 'yes' if ok else '**no**'} | {meas} |")
        P("")
        P(f"Notes: imtest does not verify the server certificate; its tunnel (bench/imtest-tunnel) "
          f"prints its own `* PREAUTH` once imtest reports the security strength factor, and ends "
          f"the session at EOF because imtest swallows LOGOUT. imtest resolves "
          f"{self.h['MAIL_HOST']} through an /etc/hosts bind-mounted in a private mount namespace "
          f"({os.environ.get('HOSTS_METHOD', 'see scripts/bench')}). CPU time comes from wait4() "
          f"on the spawned process and includes its reaped children (imtest and socat under the "
          f"imtest wrapper); peak RSS is the largest VmHWM in its process tree, read after the transfer. The whole benchmark took {self.elapsed:.0f} s.")
        text = "\n".join(lines) + "\n"
        raw = {f"{m}/{k}": v for (m, k), v in self.results.items()}
        return text, raw

    def version(self):
        try:
            return subprocess.run([self.mailtun, "--version"], capture_output=True,
                                  text=True).stdout.strip().split()[-1]
        except Exception:
            return "?"


def main():
    b = Bench()
    b.run()
    text, raw = b.report()
    print(text)
    out = os.environ.get("OUT")
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        with open(os.path.join(b.work, "raw.json"), "w") as f:
            json.dump(raw, f, indent=1)
        log(f"table saved to {out}; raw figures in {b.work}/raw.json")


if __name__ == "__main__":
    main()
