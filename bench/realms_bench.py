#!/usr/bin/env python3
"""Time to PREAUTH through `mailtun tunnel` by what the Kerberos cache holds (issue 15).

For each realm of the harness (the main MIT realm; with `--realms ad,trust` also the
Active Directory realm and the trusting MIT realm, reached with a cross-realm ticket):

  (a) ticket cached: the account's ccache holds the TGT and the service ticket
      (imap/HOST), so GSSAPI needs no KDC at all;
  (b) TGT only: the ccache holds only alice's TGT, so one TGS exchange more (two for
      the trusting realm: the cross-realm TGT, then the service ticket);
  (c) gssapi.kinit: no ticket at all; mailtun reads the password (a `password =
      { command = "cat FILE" }`, as the tests do), obtains a TGT (AS exchange, with
      pre-authentication) into memory, then the service ticket.
      For AD also (c') with the user principal name alice@ad.example (enterprise name,
      canonicalised by the KDC).

Every run gets a fresh copy of a template ccache (the TGT is obtained with kinit into a
new file, since the harness's own cache may already hold service tickets) (mailtun stores the service ticket it
obtains in the account's ccache, so a reused file would turn (b) into (a)). The templates
are checked with `klist` before the runs: (b)'s holds no service ticket, (a)'s holds one.
The KDC exchanges of each variant are counted once, in a separate untimed run with
KRB5_TRACE (MIT's library logs each request it sends), so the timed runs carry no
tracing. Variants are interleaved run by run (the order rotates), and each cell gives
the median with the min-max spread.

The clock starts just before the spawn and stops when the `* PREAUTH` line arrives; the
session then ends with LOGOUT (not timed).

Python 3 stdlib only. Environment: HARNESS_ENV (the harness's env file), MAILTUN (the
binary; a release build for meaningful numbers), RUNS (default 15), OUT (optional: the
Markdown is also written there). Prints the Markdown on stdout.
"""

import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
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
RUNS = int(os.environ.get("RUNS", "15"))


def log(msg):
    print(f"realms_bench: {msg}", file=sys.stderr, flush=True)


class Realm:
    def __init__(self, label, realm, host, addr, ca, password, principal, upn=None):
        self.label, self.realm, self.host, self.addr, self.ca = label, realm, host, addr, ca
        self.password, self.principal, self.upn = password, principal, upn


def realms():
    out = [Realm("MIT (main realm)", H["REALM"], H["MAIL_HOST"], H["MAIL_ADDR"], H["CA_FILE"],
                 H["PASSWORD"], f"alice@{H['REALM']}")]
    if "AD_REALM" in H:
        out.append(Realm("Active Directory (Samba AD DC)", H["AD_REALM"], H["AD_MAIL_HOST"],
                         H["AD_ADDR"], H["AD_CA_FILE"], H["AD_PASSWORD"],
                         f"alice@{H['AD_REALM']}", upn=H.get("AD_UPN")))
    if "TRUST_REALM" in H:
        out.append(Realm(f"cross-realm ({H['REALM']} ticket, {H['TRUST_REALM']} server)",
                         H["TRUST_REALM"], H["TRUST_MAIL_HOST"], H["TRUST_ADDR"],
                         H["TRUST_CA_FILE"], H["PASSWORD"], f"alice@{H['REALM']}"))
    return out


def krb_env(**extra):
    return dict(os.environ, KRB5_CONFIG=H["KRB5_CONFIG"], **extra)


def write_config(path, realm, ccache, kinit_principal=None, pwfile=None):
    extra = ""
    gss = f'ccache = "{ccache}"\n'
    if kinit_principal:
        extra = f'password = {{ command = "cat {pwfile}" }}\n'
        gss += f'kinit = true\nprincipal = "{kinit_principal}"\n'
    with open(path, "w") as f:
        f.write(
            f'[accounts.test]\nhost = "{realm.host}"\nconnect = "{realm.addr}"\n'
            f'ca_file = "{realm.ca}"\nuser = "alice"\ntimeout_secs = 30\nauth = ["GSSAPI"]\n'
            f"{extra}\n[accounts.test.gssapi]\n{gss}"
        )


def klist_services(ccache):
    r = subprocess.run(["klist", "-c", ccache], env=krb_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"klist {ccache}: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("Valid starting"))
    return [l.split()[-1] for l in lines[i + 1:] if l[:1].isdigit()]


def tunnel_to_preauth(config, env):
    """Spawn `mailtun tunnel test`; ms until its `* PREAUTH` line; then LOGOUT."""
    t0 = time.perf_counter()
    p = subprocess.Popen([MAILTUN, "--config", config, "tunnel", "test"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, bufsize=0)
    first = b""
    while b"\n" not in first:
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        first += chunk
    ms = (time.perf_counter() - t0) * 1000
    if not first.startswith(b"* PREAUTH"):
        p.kill()
        _, err = p.communicate()
        raise RuntimeError(f"no PREAUTH: {first[:200]!r} {err.decode()[-600:]}")
    p.stdin.write(b"a LOGOUT\r\n")
    p.stdin.close()
    p.stdout.read()
    p.stderr.read()
    if p.wait() != 0:
        raise RuntimeError(f"tunnel exited {p.returncode}")
    return ms


class Variant:
    def __init__(self, key, label, realm, template=None, principal=None):
        self.key, self.label, self.realm = key, label, realm
        self.template, self.principal = template, principal
        self.times, self.kdc = [], None

    def prepare(self, dir, pwfile, n):
        """A fresh ccache (a copy of the template, or none) and the config for run n."""
        cc = os.path.join(dir, f"{self.key}-{n}.ccache")
        if self.template:
            shutil.copyfile(self.template, cc)
        cfg = os.path.join(dir, f"{self.key}-{n}.toml")
        write_config(cfg, self.realm, f"FILE:{cc}", self.principal, pwfile)
        return cfg, cc

    def run(self, dir, n, env):
        cfg, cc = self.prepare(dir, self.realm.pwfile, n)
        ms = tunnel_to_preauth(cfg, env)
        for p in (cfg, cc):
            if os.path.exists(p):
                os.unlink(p)
        return ms


def kdc_requests(trace):
    """The KDC requests in a KRB5_TRACE file, in order: `AS`/`TGS`, the realm, `/tcp`
    when sent over TCP, and the KDC's error when it answered with one."""
    sent, kind = [], "?"
    with open(trace, errors="replace") as f:
        for line in f:
            if "Getting initial credentials for" in line:
                kind = "AS"
            elif ("Requesting tickets for" in line or "Requesting TGT" in line
                  or "Getting credentials" in line):
                kind = "TGS"
            elif "Sending request (" in line and ") to " in line:
                realm = line.rsplit(") to ", 1)[1].strip().replace(" (tcp only)", "")
                sent.append([kind, realm, "", ""])
            elif "Sending TCP request" in line and sent:
                sent[-1][2] = "/tcp"
            elif "Received error from KDC:" in line and sent:
                err = line.split("/", 1)[1].strip() if "/" in line else line.strip()
                err = {"Additional pre-authentication required": "preauth required",
                       "Response too big for UDP, retry with TCP": "too big for UDP"}.get(err, err)
                sent[-1][3] = f" → {err}"
    return [f"{k} {r}{t}{e}" for k, r, t, e in sent]


def main():
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as dir:
        variants = []
        for r in realms():
            r.pwfile = os.path.join(dir, f"{r.realm}.pw")
            fd = os.open(r.pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (r.password + "\n").encode())
            os.close(fd)
            # A TGT of our own: the harness's cache may hold service tickets by now.
            tgt = os.path.join(dir, f"{r.realm}-tgt.ccache")
            kinit = subprocess.run(["kinit", "-c", f"FILE:{tgt}", r.principal],
                                   input=r.password + "\n", env=krb_env(), text=True,
                                   capture_output=True)
            if kinit.returncode != 0:
                raise RuntimeError(f"kinit {r.principal}: {kinit.stderr.strip()}")
            svcs = klist_services(f"FILE:{tgt}")
            if any(not s.startswith("krbtgt/") for s in svcs):
                raise RuntimeError(f"the new TGT-only cache holds service tickets: {svcs}")
            # (a)'s template: what mailtun's own first connection leaves in a TGT-only cache.
            cached = os.path.join(dir, f"{r.realm}-cached.ccache")
            shutil.copyfile(tgt, cached)
            cfg = os.path.join(dir, f"{r.realm}-warm.toml")
            write_config(cfg, r, f"FILE:{cached}")
            tunnel_to_preauth(cfg, krb_env())
            svcs_a = klist_services(f"FILE:{cached}")
            want = f"imap/{r.host}@{r.realm}"
            if want not in svcs_a:
                raise RuntimeError(f"no {want} in the warmed cache: {svcs_a}")
            log(f"{r.realm}: TGT-only template holds {svcs}; ticket-cached template {svcs_a}")
            vs = [Variant(f"{r.realm}-a", "(a) service ticket cached", r, template=cached),
                  Variant(f"{r.realm}-b", "(b) TGT only", r, template=tgt),
                  Variant(f"{r.realm}-c", f"(c) gssapi.kinit, principal {r.principal}", r,
                          principal=r.principal)]
            if r.upn:
                vs.append(Variant(f"{r.realm}-u", f"(c') gssapi.kinit, principal {r.upn} (UPN)",
                                  r, principal=r.upn))
            for v in vs:
                v.templ_services = (klist_services(f"FILE:{v.template}") if v.template else [])
            variants += vs
        # KDC exchanges per variant, in an untimed traced run.
        for v in variants:
            trace = os.path.join(dir, f"{v.key}.trace")
            v.run(dir, "trace", krb_env(KRB5_TRACE=trace))
            v.kdc = kdc_requests(trace)
        # One untimed warm-up of each, then RUNS interleaved rounds with a rotating order.
        for v in variants:
            v.run(dir, "warm", krb_env())
        env = krb_env()
        for n in range(RUNS):
            k = n % len(variants)
            for v in variants[k:] + variants[:k]:
                v.times.append(v.run(dir, n, env))
            log(f"round {n + 1}/{RUNS} done")
    load1 = os.getloadavg()
    elapsed = time.perf_counter() - t_start

    out = []
    out.append(f"## Time to PREAUTH by what the ticket cache holds, {datetime.date.today()} "
               "(bench/realms_bench.py, issue 15)\n")
    out.append(f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, kernel {platform.release()}; "
               f"harness realms {', '.join(r.realm for r in realms())}. "
               f"Load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at the start, "
               f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at the end (other builds share the CPUs). "
               f"mailtun {MAILTUN}. {RUNS} runs of each variant, interleaved (rotating order), "
               f"after one warm-up each; the whole benchmark took {elapsed:.0f} s.\n")
    out.append("IMAP over the SSL port (the account's default `tls`), GSSAPI only. The clock runs "
               "from the spawn of `mailtun tunnel` to its `* PREAUTH` line. Each run gets a fresh "
               "copy of its ccache. KDC requests: counted from KRB5_TRACE in a separate untimed "
               "run (each `Sending request ... to REALM`, with the exchange it belongs to, TCP when "
               "used, and the KDC's error when it answered with one: pre-authentication "
               "required, or a reply too big for UDP, which MIT's library then retries over "
               "TCP).\n")
    out.append("| realm | variant | tickets in the ccache before | KDC requests (kind, realm, error) | "
               "median ms | min-max ms | vs (a) |")
    out.append("|---|---|---|---|---|---|---|")
    base = {}
    for v in variants:
        med = statistics.median(v.times)
        if v.key.endswith("-a"):
            base[v.realm.realm] = med
        ratio = med / base[v.realm.realm]
        tickets = ", ".join(v.templ_services) if v.template else "none (no ccache file)"
        kdc = "none" if not v.kdc else f"{len(v.kdc)}: " + "; ".join(v.kdc)
        out.append(f"| {v.realm.label} | {v.label} | {tickets} | {kdc} | {med:.1f} | "
                   f"{min(v.times):.1f}-{max(v.times):.1f} | {ratio:.2f}x |")
    text = "\n".join(out) + "\n"
    print(text)
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
