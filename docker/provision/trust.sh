#!/usr/bin/env bash
# One-way cross-realm trust between two MIT realms made by kdc.sh: principals of
# MAIN_REALM may get tickets for services of OTHER_REALM (not the reverse).
# Adds krbtgt/OTHER_REALM@MAIN_REALM to BOTH databases with the same password and
# enctypes. Clients also need `[capaths]` (or a shared domain hierarchy) and a
# domain_realm entry for OTHER_REALM's hosts: see krb5conf.sh (CAPATHS, EXTRA_DOMAINS);
# the serving side maps the foreign principals to users with auth_to_local
# (krb5conf.sh AUTH_TO_LOCAL_REALMS).
# Environment (all required but the password):
#   MAIN_STATE, MAIN_REALM    state directory and realm of the trusting-from side
#   OTHER_STATE, OTHER_REALM  state directory and realm of the trusted-to side
#   TRUST_PASSWORD            the shared key's password (default: random)
set -euo pipefail
: "${MAIN_STATE:?}" "${MAIN_REALM:?}" "${OTHER_STATE:?}" "${OTHER_REALM:?}"
TRUST_PASSWORD=${TRUST_PASSWORD:-trust-$(openssl rand -hex 16)}
enctypes="aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal"
for side in "$MAIN_STATE:$MAIN_REALM" "$OTHER_STATE:$OTHER_REALM"; do
  st=${side%%:*} realm=${side#*:}
  KRB5_KDC_PROFILE="$st/kdc/kdc.conf" KRB5_CONFIG="$st/krb5.conf" \
    kadmin.local -r "$realm" >>"$st/log/kadmin.local.log" 2>&1 <<CMDS
addprinc -e "$enctypes" -pw $TRUST_PASSWORD krbtgt/$OTHER_REALM@$MAIN_REALM
CMDS
  KRB5_KDC_PROFILE="$st/kdc/kdc.conf" KRB5_CONFIG="$st/krb5.conf" \
    kadmin.local -r "$realm" -q "getprinc krbtgt/$OTHER_REALM@$MAIN_REALM" 2>&1 \
    | grep -q "^Principal: krbtgt/$OTHER_REALM@$MAIN_REALM" \
    || { echo "trust.sh: krbtgt/$OTHER_REALM@$MAIN_REALM not created in $realm, see $st/log/kadmin.local.log" >&2; exit 1; }
done
