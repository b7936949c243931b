#!/usr/bin/env bash
# Active Directory realm: a Samba AD DC (its built-in, Heimdal-derived KDC) on one address.
# Usage: samba-ad.sh [all|provision|start|run|stop]   (default: all = provision + start)
#   provision  provision the domain under $STATE/samba, create the users and the mail
#              service account (SPNs imap/ pop/ smtp/$MAIL_HOST, AES keys only), export
#              its keytab to $STATE/mail.keytab, write $STATE/krb5.conf (krb5conf.sh)
#   start      start samba in the background (pid file $STATE/samba/run/samba.pid)
#   run        samba in the foreground (containers)
#   stop       stop the samba started by `start` (idempotent)
# Only the KDC service runs (no DNS, file, NetBIOS, LDAP or RPC servers), bound only to
# AD_ADDR (`bind interfaces only`). Its KDC issues AES tickets only (`kdc supported
# enctypes`), as a domain with RC4 turned off: a ticket for rc4svc's SPN is refused with
# KDC_ERR_ETYPE_NOSUPP.
# Environment:
#   STATE (required), AD_REALM (AD.EXAMPLE), AD_DOMAIN (NetBIOS name, ADEX),
#   AD_ADDR (numeric address of the DC, 127.0.0.2), AD_INTERFACES (what samba binds:
#   default $AD_ADDR/8; in a container the interface name, e.g. eth0), MAIL_HOST (mail.ad.example),
#   ALICE_PASSWORD, ADMIN_PASSWORD (defaults below), KEYTAB_GROUP (dovecot if it exists)
# Accounts: alice (UPN alice@<dns domain of AD_REALM>); mailsvc (the service account);
#   rc4svc with SPN imap/rc4-$MAIL_HOST and no msDS-SupportedEncryptionTypes, i.e. a
#   service the KDC treats as RC4-only; pwexpired (password must be changed); locked
#   (locked out: lockoutTime set).
set -euo pipefail
: "${STATE:?STATE must name the state directory}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AD_REALM=${AD_REALM:-AD.EXAMPLE}
AD_DOMAIN=${AD_DOMAIN:-ADEX}
AD_ADDR=${AD_ADDR:-127.0.0.2}
AD_INTERFACES=${AD_INTERFACES:-$AD_ADDR/8}
MAIL_HOST=${MAIL_HOST:-mail.ad.example}
ALICE_PASSWORD=${ALICE_PASSWORD:-alice-Pass.123}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-Admin-Pass.789}
if [ -z "${KEYTAB_GROUP+x}" ]; then
  if getent group dovecot >/dev/null; then KEYTAB_GROUP=dovecot; else KEYTAB_GROUP=; fi
fi
# Samba's Python modules live with Debian's interpreter (PATH may start with another).
PYTHON=${PYTHON:-/usr/bin/python3}
dir="$STATE/samba"
conf="$dir/etc/smb.conf"
pidfile="$dir/run/samba.pid"
log="$STATE/log/samba-provision.log"

tool() { samba-tool "$@" -s "$conf" >>"$log" 2>&1; }

# set_attr ACCOUNT ATTRIBUTE VALUE: replaces one attribute of a user in the domain's
# database (samba-tool has no non-interactive way to do this).
set_attr() {
  "$PYTHON" - "$conf" "$@" >>"$log" 2>&1 <<'PY'
import sys
import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
conf, account, attr, value = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
m = ldb.Message()
m.dn = ldb.Dn(db, "CN=%s,CN=Users,%s" % (account, db.domain_dn()))
m[attr] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, attr)
db.modify(m)
PY
}

provision() {
  rm -rf "$dir"
  mkdir -p "$STATE/log" "$STATE/run"
  : > "$log"
  samba-tool domain provision --server-role=dc --use-rfc2307 --dns-backend=NONE \
    --realm="$AD_REALM" --domain="$AD_DOMAIN" --host-name=dc --adminpass="$ADMIN_PASSWORD" \
    --targetdir="$dir" \
    --option="interfaces = $AD_INTERFACES" --option="bind interfaces only = yes" \
    --option="server services = kdc" --option="prefork children = 1" \
    --option="pid directory = $dir/run" --option="log file = $STATE/log/samba.log" \
    --option="unix password sync = no" \
    --option="kdc supported enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96" \
    >>"$log" 2>&1 \
    || { echo "samba-ad.sh: provisioning failed, see $log" >&2; exit 1; }
  mkdir -p "$dir/run"
  tool user create alice "$ALICE_PASSWORD"
  tool user create pwexpired "$ALICE_PASSWORD" --must-change-at-next-login
  tool user create locked "$ALICE_PASSWORD"
  # Locked out: what the KDC sees after too many bad passwords (lockoutTime != 0).
  tool domain passwordsettings set --account-lockout-threshold=5 \
    --reset-account-lockout-after=600 --account-lockout-duration=600
  set_attr locked lockoutTime $(( ($(date +%s) + 11644473600) * 10000000 ))
  tool user create mailsvc --random-password
  tool user create rc4svc --random-password
  local s
  for s in imap pop smtp; do tool spn add "$s/$MAIL_HOST" mailsvc; done
  tool spn add "imap/rc4-$MAIL_HOST" rc4svc
  # AES only (0x18). Without it Samba's KDC treats the account as RC4-only, and the
  # exported keytab holds just an RC4 key.
  set_attr mailsvc msDS-SupportedEncryptionTypes 24
  rm -f "$STATE/mail.keytab"
  for s in imap pop smtp; do
    tool domain exportkeytab "$STATE/mail.keytab" --principal="$s/$MAIL_HOST"
  done
  [ -s "$STATE/mail.keytab" ] || { echo "samba-ad.sh: keytab not exported, see $log" >&2; exit 1; }
  if klist -ke "$STATE/mail.keytab" | grep -q arcfour; then
    echo "samba-ad.sh: the service keytab holds an RC4 key; msDS-SupportedEncryptionTypes not applied" >&2
    exit 1
  fi
  if [ -n "$KEYTAB_GROUP" ]; then chgrp "$KEYTAB_GROUP" "$STATE/mail.keytab"; fi
  chmod 0640 "$STATE/mail.keytab"
  STATE=$STATE REALM=$AD_REALM KDC_ADDR=$AD_ADDR KDC_PORT=88 MAIL_HOST=$MAIL_HOST \
    "$here/krb5conf.sh"
}

# running PID: PID exists and is not a zombie (a dead daemon awaiting its reaper).
running() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }

stop() {
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  # samba rewrites its command line ("samba: root process"): check the executable.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(readlink "/proc/$pid/exe")" = "$(command -v samba)" ]; then
    kill "$pid"
    for _ in $(seq 100); do running "$pid" || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

start() {
  stop
  mkdir -p "$dir/run" "$STATE/log"
  samba -s "$conf" -D >>"$STATE/log/samba.out" 2>&1 </dev/null
}

case "${1:-all}" in
  all) provision; start ;;
  provision) provision ;;
  start) start ;;
  run) exec samba -s "$conf" -i --no-process-group ;;
  stop) stop ;;
  *) echo "usage: $0 [all|provision|start|run|stop]" >&2; exit 2 ;;
esac
