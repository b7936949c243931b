#!/usr/bin/env bash
# Test PKI for the mail host.
#   STATE      (required) state directory; files go to $STATE/tls/
#   MAIL_HOST  server name put in the certificates' SAN (default mail.example.test)
#   CERT_DAYS  validity of the certificates (default 3650)
#   EXTRA_SANS other DNS names for the server certificates (space-separated; default none)
# Writes (PEM):
#   tls/ca.pem            test CA (trust anchor for the real server)
#   tls/server.pem        server certificate for MAIL_HOST, signed by ca.pem
#   tls/server.key        its key (0600; Dovecot reads it as root)
#   tls/unknown-ca.pem    a second, unrelated CA ("unknown CA" failure tests)
#   tls/unknown-server.pem / unknown-server.key   cert for MAIL_HOST signed by unknown-ca.pem
# Keys are ECDSA P-256; everything is regenerated on each run.
set -euo pipefail
: "${STATE:?STATE must name the state directory}"
MAIL_HOST=${MAIL_HOST:-mail.example.test}
CERT_DAYS=${CERT_DAYS:-3650}
dir="$STATE/tls"
mkdir -p "$dir"
umask 077

sans=""
for n in ${EXTRA_SANS:-}; do sans+=",DNS:$n"; done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# make_ca NAME SUBJECT -> $dir/NAME.pem, $dir/NAME.key
make_ca() {
  newkey "$dir/$1.key"
  openssl req -new -x509 -key "$dir/$1.key" -out "$dir/$1.pem" -days "$CERT_DAYS" \
    -subj "$2" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# make_leaf NAME CA -> $dir/NAME.pem, $dir/NAME.key for MAIL_HOST signed by CA
make_leaf() {
  local ext="$dir/$1.ext"
  newkey "$dir/$1.key"
  openssl req -new -key "$dir/$1.key" -subj "/CN=$MAIL_HOST" -out "$dir/$1.csr" 2>/dev/null
  cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$MAIL_HOST$sans
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.pem" -CAkey "$dir/$2.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days "$CERT_DAYS" -sha256 \
    -extfile "$ext" -out "$dir/$1.pem" 2>/dev/null
  rm -f "$dir/$1.csr" "$ext"
}

make_ca ca "/O=mailtun test/CN=mailtun test CA"
make_leaf server ca
make_ca unknown-ca "/O=mailtun test/CN=mailtun UNKNOWN test CA"
make_leaf unknown-server unknown-ca
chmod 0644 "$dir"/*.pem
openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null
