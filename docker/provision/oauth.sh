#!/usr/bin/env bash
# OAuth 2.0 test realm: the Authlib authorization server (idp.py) and a Dovecot whose
# `passdb oauth2` validates every token by introspection at it (IdP -> mailtun ->
# Dovecot -> IdP). Separate from the Kerberos harness: its own state dir and address.
# Usage: oauth.sh up|down|provision|idp-run|env
#   up         provision, start the IdP, the sink and Dovecot in the background, wait, env
#   down       stop what `up` started
#   provision  CA, the IdP's certificate, alice's mail, the Dovecot config (passdb oauth2);
#              $STATE/.oauth-provisioned when done
#   idp-run    the IdP in the foreground (containers: docker/compose.yaml, profile oauth)
#   env        write $STATE/env (IDP_URL, MAIL_ADDR, CA_FILE, ...) for MAILTUN_OAUTH_ENV
#   STATE (required; must be under /tmp or /work), OAUTH_ADDR (127.0.0.4; loopback: the
#   address clients use, named in the IdP's certificate), IDP_PORT (8443), ports as in
#   dovecot.sh (IMAP 143/993, POP3 110/995, submission 587/465 on OAUTH_ADDR; the SMTP
#   sink on OAUTH_ADDR:2525). In containers: OAUTH_LISTEN (what Dovecot binds, default
#   OAUTH_ADDR), IDP_LISTEN (what the IdP binds, default OAUTH_ADDR), IDP_HOST (the name
#   Dovecot reaches the IdP by for introspection, default OAUTH_ADDR; idp.example.test
#   is in the certificate too), SINK_ADDR (default OAUTH_LISTEN).
# Users: alice, carol, dave, erin, frank, grace, heidi, ivan (password USER-Pass.123); alice's INBOX is seeded.
set -euo pipefail
: "${STATE:?STATE must name the state directory}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OAUTH_ADDR=${OAUTH_ADDR:-127.0.0.4}
IDP_PORT=${IDP_PORT:-8443}
IDP_LISTEN=${IDP_LISTEN:-$OAUTH_ADDR}
IDP_HOST=${IDP_HOST:-$OAUTH_ADDR}
MARKER=.mailtun-oauth
export STATE MAIL_ADDR=${OAUTH_LISTEN:-$OAUTH_ADDR} MAIL_HOST=mail.example.test
export SINK_ADDR=${SINK_ADDR:-$MAIL_ADDR}
USERS="alice:alice-Pass.123 carol:carol-Pass.123 dave:dave-Pass.123 erin:erin-Pass.123 frank:frank-Pass.123 grace:grace-Pass.123 heidi:heidi-Pass.123 ivan:ivan-Pass.123"
INTROSPECT_SECRET=dovecot-Secret.321
idppid="$STATE/run/idp.pid"

down() {
  [ -e "$STATE/$MARKER" ] || return 0
  "$here/dovecot.sh" stop || true
  "$here/dovecot.sh" sink-stop || true
  if [ -f "$idppid" ]; then
    kill "$(cat "$idppid")" 2>/dev/null || true
    rm -f "$idppid"
  fi
}

provision() {
  mkdir -p "$STATE/run" "$STATE/log"
  rm -f "$STATE/.oauth-provisioned"
  "$here/ca.sh"
  # The IdP's certificate names its address: Dovecot and mailtun reach it by IP.
  local tls="$STATE/tls"
  ( umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/idp.key" 2>/dev/null
    openssl req -new -key "$tls/idp.key" -subj "/CN=$OAUTH_ADDR" -out "$tls/idp.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:idp.example.test\n' \
      "$OAUTH_ADDR" > "$tls/idp.ext"
    openssl x509 -req -in "$tls/idp.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -days 3650 -sha256 -extfile "$tls/idp.ext" \
      -out "$tls/idp.pem" 2>/dev/null
    rm -f "$tls/idp.csr" "$tls/idp.ext" )
  BIG_MESSAGE_BYTES=${BIG_MESSAGE_BYTES:-15000000} "$here/seed-mail.sh"
  # The stock harness config with OAuth as the only way in.
  : > "$STATE/mail.keytab"
  "$here/dovecot.sh" provision
  local dcdir="$STATE/dovecot" conf="$STATE/dovecot/dovecot.conf"
  cat > "$dcdir/oauth2.conf" <<CONF
introspection_url = https://dovecot:$INTROSPECT_SECRET@$IDP_HOST:$IDP_PORT/introspect
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
scope = mail
tls_ca_cert_file = $tls/ca.pem
CONF
  chgrp dovecot "$dcdir/oauth2.conf"; chmod 0640 "$dcdir/oauth2.conf"
  sed -i -e 's/^auth_mechanisms = .*/auth_mechanisms = oauthbearer xoauth2/' \
    -e '/^auth_realms/d' -e '/^auth_default_realm/d' -e '/^auth_krb5_keytab/d' \
    -e '/^auth_gssapi_hostname/d' "$conf"
  # Replace the passwd-file passdb by the oauth2 one (a revoked token must fail at once).
  python3 - "$conf" "$dcdir/oauth2.conf" <<'PY'
import re, sys
p, args = sys.argv[1], sys.argv[2]
s = open(p).read()
s = re.sub(r"passdb \{.*?\n\}\n", "passdb {\n  driver = oauth2\n  mechanisms = oauthbearer xoauth2\n  args = %s\n}\nauth_cache_size = 0\n" % args, s, count=1, flags=re.S)
open(p, "w").write(s)
PY
  doveconf -c "$conf" -n >/dev/null
  : > "$STATE/.oauth-provisioned"
}

# The IdP in the foreground; its URL for clients is always https://OAUTH_ADDR:IDP_PORT.
idp_run() {
  IDP_USERS="$USERS" IDP_INTROSPECT_SECRET="$INTROSPECT_SECRET" IDP_PUBLIC_URL="https://$OAUTH_ADDR:$IDP_PORT" \
    exec /usr/bin/python3 "$here/idp.py" "$IDP_LISTEN" "$IDP_PORT" "$STATE/tls/idp.pem" "$STATE/tls/idp.key"
}

write_env() {
  cat > "$STATE/env" <<ENV
OAUTH_DIR=$STATE
IDP_URL=https://$OAUTH_ADDR:$IDP_PORT
MAIL_HOST=$MAIL_HOST
MAIL_ADDR=$OAUTH_ADDR
CA_FILE=$STATE/tls/ca.pem
USERS=$USERS
BIG_MESSAGE=$STATE/big-message.eml
BIG_MESSAGE_UID=4
LOG_DIR=$STATE/log
ENV
}

up() {
  case "$OAUTH_ADDR" in 127.0.0.1|127.*.*.*) ;; *) echo "oauth.sh: OAUTH_ADDR must be loopback" >&2; exit 1 ;; esac
  if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ] && [ ! -e "$STATE/$MARKER" ]; then
    echo "oauth.sh: $STATE is not an oauth state dir; refusing to wipe it" >&2; exit 1
  fi
  down
  rm -rf "$STATE"
  mkdir -p "$STATE/run" "$STATE/log"
  : > "$STATE/$MARKER"
  provision
  setsid "$here/oauth.sh" idp-run >>"$STATE/log/idp.log" 2>&1 </dev/null &
  echo $! > "$idppid"
  # Dovecot's submission connects to its relay (the SMTP sink) at login.
  "$here/dovecot.sh" sink-start
  "$here/dovecot.sh" start
  local ok=0
  for _ in $(seq 200); do
    if curl -fsS --cacert "$STATE/tls/ca.pem" "https://$OAUTH_ADDR:$IDP_PORT/.well-known/openid-configuration" >/dev/null 2>&1 \
      && (exec 3<>"/dev/tcp/$OAUTH_ADDR/993") 2>/dev/null; then ok=1; break; fi
    sleep 0.05
  done
  [ $ok = 1 ] || { echo "oauth.sh: IdP or Dovecot not answering; logs in $STATE/log" >&2; down; exit 1; }
  write_env
  echo "oauth.sh: IdP https://$OAUTH_ADDR:$IDP_PORT, Dovecot (oauth2) on $OAUTH_ADDR; env: $STATE/env"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  provision) provision ;;
  idp-run) idp_run ;;
  env) write_env ;;
  *) echo "usage: oauth.sh up|down|provision|idp-run|env" >&2; exit 2 ;;
esac
