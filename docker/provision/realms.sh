# The other realms of the test set-up (sourced by scripts/harness and docker/up, so that
# the native harness and the containers name them, configure clients for them and
# describe them in STATE/env the same way).
#   ad     Active Directory domain AD.EXAMPLE (samba-ad.sh) with a Dovecot for mail.ad.example
#   trust  MIT realm OTHER.TEST (kdc.sh + trust.sh) trusting the main realm one way, with a
#          Dovecot for mail.other.test
AD_REALM=AD.EXAMPLE AD_MAIL_HOST=mail.ad.example AD_DOMAIN=ad.example
TRUST_REALM=OTHER.TEST TRUST_MAIL_HOST=mail.other.test TRUST_DOMAIN=other.test

# realms_krb5 MAIN_REALM AD_KDC TRUST_KDC: sets EXTRA_REALMS, EXTRA_DOMAINS, CAPATHS and
# CANONICALIZE_REALMS (krb5conf.sh) so that the main realm's krb5.conf knows the realms
# whose KDC (HOST:PORT) is given (an empty argument leaves that realm out): their KDCs,
# their mail hosts (and rc4-HOST of AD, a name whose SPN has only an RC4 key), the trust
# path MAIN -> OTHER, and AD's KDC canonicalising enterprise names.
realms_krb5() {
  EXTRA_REALMS="" EXTRA_DOMAINS="" CAPATHS="" CANONICALIZE_REALMS=""
  if [ -n "$2" ]; then
    EXTRA_REALMS+=" $AD_REALM=$2"
    EXTRA_DOMAINS+=" .$AD_DOMAIN=$AD_REALM $AD_DOMAIN=$AD_REALM $AD_MAIL_HOST=$AD_REALM rc4-$AD_MAIL_HOST=$AD_REALM"
    CANONICALIZE_REALMS=$AD_REALM
  fi
  if [ -n "$3" ]; then
    EXTRA_REALMS+=" $TRUST_REALM=$3"
    EXTRA_DOMAINS+=" .$TRUST_DOMAIN=$TRUST_REALM $TRUST_DOMAIN=$TRUST_REALM $TRUST_MAIL_HOST=$TRUST_REALM"
    CAPATHS="$1:$TRUST_REALM"
  fi
}

# ad_env DIR ADDR PASSWORD: the AD_* lines of STATE/env for the AD realm in DIR (host
# path) reached at ADDR.
ad_env() {
  cat <<ENV
AD_REALM=$AD_REALM
AD_ADDR=$2
AD_MAIL_HOST=$AD_MAIL_HOST
AD_RC4_MAIL_HOST=rc4-$AD_MAIL_HOST
AD_UPN=alice@$AD_DOMAIN
AD_PASSWORD=$3
AD_ALICE_CCACHE=FILE:$1/alice.ccache
AD_CA_FILE=$1/tls/ca.pem
AD_BIG_MESSAGE=$1/big-message.eml
AD_SINK_DIR=$1/sink
AD_KEYTAB=$1/mail.keytab
AD_PWEXPIRED_USER=pwexpired@$AD_REALM
AD_LOCKED_USER=locked@$AD_REALM
ENV
}

# trust_env DIR ADDR: the TRUST_* lines of STATE/env for the trusting realm in DIR.
trust_env() {
  cat <<ENV
TRUST_REALM=$TRUST_REALM
TRUST_ADDR=$2
TRUST_MAIL_HOST=$TRUST_MAIL_HOST
TRUST_CA_FILE=$1/tls/ca.pem
TRUST_BIG_MESSAGE=$1/big-message.eml
TRUST_SINK_DIR=$1/sink
TRUST_CLIENT_CCACHE=FILE:$1/alice-main.ccache
ENV
}

# realm_kinit KRB5_CONFIG CCACHE PRINCIPAL PASSWORD LOG: kinit into CCACHE, retried for
# ~5 s (a KDC that has just started may not answer yet).
realm_kinit() {
  local i
  for i in $(seq 20); do
    if printf '%s\n' "$4" | KRB5_CONFIG=$1 kinit -c "$2" "$3" >>"$5" 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}
