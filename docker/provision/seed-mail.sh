#!/usr/bin/env bash
# Seeds alice's INBOX (Maildir) with 3 small messages and one large one.
#   STATE (required); MAIL_HOST (mail.example.test); REALM_DOMAIN (example.test)
#   VMAIL_USER / VMAIL_GROUP: owner of the mail files (nobody / nogroup)
#   BIG_MESSAGE_BYTES: raw attachment size (default 15000000 -> ~20.5 MB message)
# Files are stored with CRLF line endings, so IMAP FETCH BODY[] returns the file's
# bytes unchanged. UIDs are fixed by a pre-written dovecot-uidlist:
#   UIDVALIDITY 1700000000, UIDs 1..3 = small messages, UID 4 = the big one.
# $STATE/big-message.eml is a byte copy of the stored big message.
# The attachment is AES-128-CTR keystream under a fixed key: same bytes on every run.
set -euo pipefail
: "${STATE:?STATE must name the state directory}"
MAIL_HOST=${MAIL_HOST:-mail.example.test}
DOMAIN=${REALM_DOMAIN:-${MAIL_HOST#*.}}
VMAIL_USER=${VMAIL_USER:-nobody}
VMAIL_GROUP=${VMAIL_GROUP:-nogroup}
BIG=${BIG_MESSAGE_BYTES:-15000000}

home="$STATE/mail/alice"
md="$home/Maildir"
rm -rf "$home"
mkdir -p "$md/cur" "$md/new" "$md/tmp"

crlf() { sed 's/$/\r/'; }

small() { # N SUBJECT BODY-LINE
  crlf <<MSG
Return-Path: <bob@$DOMAIN>
From: Bob <bob@$DOMAIN>
To: Alice <alice@$DOMAIN>
Subject: $2
Date: Tue, 14 Nov 2023 22:13:2$1 +0000
Message-ID: <seed-$1@$DOMAIN>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

$3
This is seed message number $1.
-- 
Bob
MSG
}

names=()
for n in 1 2 3; do
  f="170000000$n.M${n}P1.$MAIL_HOST:2,"
  case $n in
    1) small 1 "Hello Alice" "Hi Alice, this is the first test message." ;;
    2) small 2 "Lunch?" "Lunch at noon?" ;;
    3) small 3 "Dots and spaces" ". a line starting with a dot, and trailing spaces   " ;;
  esac > "$md/cur/$f"
  names+=("$f")
done

big="1700000004.M4P1.$MAIL_HOST:2,"
{
  crlf <<MSG
Return-Path: <bob@$DOMAIN>
From: Bob <bob@$DOMAIN>
To: Alice <alice@$DOMAIN>
Subject: Big attachment
Date: Tue, 14 Nov 2023 22:13:24 +0000
Message-ID: <seed-4-big@$DOMAIN>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mailtun-seed-boundary"

--mailtun-seed-boundary
Content-Type: text/plain; charset=us-ascii

The attachment holds $BIG deterministic pseudo-random bytes.

--mailtun-seed-boundary
Content-Type: application/octet-stream; name="blob.bin"
Content-Disposition: attachment; filename="blob.bin"
Content-Transfer-Encoding: base64

MSG
  openssl enc -aes-128-ctr -nosalt -K 6d61696c74756e2d7365656421212121 \
      -iv 00000000000000000000000000000000 -in <(head -c "$BIG" /dev/zero) \
    | base64 -w 76 | crlf
  printf -- '--mailtun-seed-boundary--\r\n'
} > "$md/cur/$big"
names+=("$big")
cp "$md/cur/$big" "$STATE/big-message.eml"
chmod 0644 "$STATE/big-message.eml"

{
  printf '3 V1700000000 N5\n'
  uid=1
  for f in "${names[@]}"; do printf '%d :%s\n' "$uid" "${f%%:*}"; uid=$((uid + 1)); done
} > "$md/dovecot-uidlist"

chown -R "$VMAIL_USER:$VMAIL_GROUP" "$STATE/mail"
chmod -R u=rwX,go= "$home"
