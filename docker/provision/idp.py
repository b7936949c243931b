#!/usr/bin/python3
"""Test OAuth 2.0 authorization server for mailtun (Authlib + Flask, Debian packages).

Test use only: everything lives in memory. Grants: RFC 8628 device code, authorization
code with PKCE S256 (required), refresh token with rotation (each refresh returns a new
refresh token and revokes the old one). Endpoints: RFC 7662 introspection (for Dovecot,
HTTP Basic as client `dovecot`), RFC 7009 revocation, OpenID/RFC 8414 discovery.

Usage: idp.py ADDR PORT CERT KEY
Environment: IDP_PUBLIC_URL (the URL clients use, default https://ADDR:PORT; in a container
that listens on 0.0.0.0 behind a published port), IDP_HOOK_PEERS (addresses besides
127.* allowed to use the test hooks: the container's gateway, which is where connections
through a loopback-only published port come from), IDP_ACCESS_SECS (access-token lifetime), IDP_USERS
("alice:PASSWORD bob:PASSWORD"), IDP_INTROSPECT_SECRET (secret of client `dovecot`),
IDP_CLIENT_SECRET (secret of the confidential client `mailtun-secret`),
IDP_SLOW_MIN_GAP (seconds `mailtun-slow` must leave between polls at first; default 3).
Clients: `mailtun`, `mailtun-short` and `mailtun-brief` (device codes of 2 s; public), `mailtun-secret` (client_secret_basic/post), `dovecot`,
`mailtun-slow` (public; a server under load: its device codes advertise a 1 s interval,
but a poll sooner than IDP_SLOW_MIN_GAP after the previous one, or sooner than the
interval plus 5 s per `slow_down` already sent (RFC 8628 3.5), is answered `slow_down`,
before and after approval: a client that ignores it never gets its token).
Clients get IDP_ACCESS_SECS-long access tokens (default 3600), `mailtun-short` 30 s ones.
Test hooks (loopback only): POST /test/revoke-user {username} revokes all its tokens;
POST /test/reset-user {username[, client_id]} forgets them (counts start from zero);
GET /test/tokens?username=U lists every token issued to U (leak checks);
GET /test/stats?username=U[&client_id=C] counts its tokens and live refresh tokens;
GET /test/polls?user_code=X lists the token-endpoint polls of that device code, in order
({"error" or "ok", "gap": seconds since the previous poll}).
"""
import secrets
import sys
import time
from urllib.parse import urlparse

from flask import Flask, jsonify, request
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import ClientMixin, TokenMixin, AuthorizationCodeMixin
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint, DeviceCodeGrant as _DeviceCodeGrant, DeviceCredentialDict,
    SlowDownError,
)
import os

ADDR, PORT, CERT, KEY = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
BASE = os.environ.get("IDP_PUBLIC_URL") or f"https://{ADDR}:{PORT}"
HOOK_PEERS = os.environ.get("IDP_HOOK_PEERS", "").split()
ACCESS_SECS = int(os.environ.get("IDP_ACCESS_SECS", "3600"))
USERS = dict(u.split(":", 1) for u in os.environ.get("IDP_USERS", "alice:alice-Pass.123").split())
SCOPES = "mail offline_access"


class User:
    def __init__(self, name):
        self.name = name

    def get_user_id(self):
        return self.name


class Client(ClientMixin):
    def __init__(self, client_id, secret, auth_method, grant_types):
        self.client_id, self.secret = client_id, secret
        self.auth_method, self.grant_types = auth_method, grant_types

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in SCOPES.split())

    def check_redirect_uri(self, redirect_uri):
        # RFC 8252 loopback redirect: any port on 127.0.0.1.
        u = urlparse(redirect_uri)
        return u.scheme == "http" and u.hostname == "127.0.0.1"

    def check_client_secret(self, client_secret):
        return self.secret is not None and secrets.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


class Token(TokenMixin):
    def __init__(self, data, client_id, user):
        self.access_token = data["access_token"]
        self.refresh_token = data.get("refresh_token")
        self.scope = data.get("scope", "")
        self.client_id, self.user = client_id, user
        self.issued_at = int(time.time())
        self.expires_in = data.get("expires_in", ACCESS_SECS)
        self.access_revoked = self.refresh_revoked = False

    def check_client(self, client):
        return client.get_client_id() in (self.client_id, "dovecot")

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.access_revoked

    def get_user(self):
        return self.user

    def get_client(self):
        return CLIENTS[self.client_id]


class AuthCode(AuthorizationCodeMixin):
    def __init__(self, code, req, user):
        self.code, self.user = code, user
        self.client_id = req.client_id
        self.redirect_uri = req.redirect_uri
        self.scope = req.scope
        self.code_challenge = req.data.get("code_challenge")
        self.code_challenge_method = req.data.get("code_challenge_method")
        self.created = time.time()

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return None

    def get_auth_time(self):
        return int(self.created)


CLIENTS = {
    "mailtun": Client("mailtun", None, "none",
                      ["authorization_code", "refresh_token", _DeviceCodeGrant.GRANT_TYPE]),
    "mailtun-short": Client("mailtun-short", None, "none",
                            ["authorization_code", "refresh_token", _DeviceCodeGrant.GRANT_TYPE]),
    "mailtun-brief": Client("mailtun-brief", None, "none", [_DeviceCodeGrant.GRANT_TYPE]),
    "mailtun-slow": Client("mailtun-slow", None, "none",
                           ["refresh_token", _DeviceCodeGrant.GRANT_TYPE]),
    "mailtun-secret": Client("mailtun-secret", os.environ.get("IDP_CLIENT_SECRET", "client-Secret.789"),
                             "client_secret_basic",
                             ["authorization_code", "refresh_token", _DeviceCodeGrant.GRANT_TYPE]),
    "dovecot": Client("dovecot", os.environ.get("IDP_INTROSPECT_SECRET", "dovecot-Secret.321"),
                      "client_secret_basic", []),
}
TOKENS = []          # every Token ever issued
CODES = {}           # authorization code -> AuthCode
DEVICE = {}          # device_code -> DeviceCredentialDict
USER_GRANTS = {}     # user_code -> (User, approved)
LAST_POLL = {}       # device_code -> time of the last poll
POLLS = {}           # user_code -> [{"outcome": error or "ok", "gap": seconds}] (test hook)
SLOW_MIN_GAP = float(os.environ.get("IDP_SLOW_MIN_GAP", "3"))


def find_access(value):
    return next((t for t in TOKENS if t.access_token == value), None)


def find_refresh(value):
    return next((t for t in TOKENS if t.refresh_token == value), None)


def save_token(data, req):
    user = req.user
    TOKENS.append(Token(data, req.client.get_client_id(), user))


app = Flask(__name__)


def expires_in(client, grant_type):
    # `mailtun-short` gets 30 s tokens: mailtun refreshes any token with < 60 s left.
    return 30 if client.get_client_id() == "mailtun-short" else ACCESS_SECS


app.config["OAUTH2_TOKEN_EXPIRES_IN"] = "__main__.expires_in"
app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
server = AuthorizationServer(app, query_client=CLIENTS.get, save_token=save_token)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, req):
        CODES[code] = AuthCode(code, req, req.user)

    def query_authorization_code(self, code, client):
        c = CODES.get(code)
        if c and c.client_id == client.get_client_id() and time.time() < c.created + 60:
            return c
        return None

    def delete_authorization_code(self, authorization_code):
        CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token):
        t = find_refresh(refresh_token)
        if t and not t.refresh_revoked:
            return t
        return None

    def authenticate_user(self, credential):
        return credential.user

    def revoke_old_credential(self, credential):
        credential.refresh_revoked = True


class DeviceCodeGrant(_DeviceCodeGrant):
    def query_device_credential(self, device_code):
        return DEVICE.get(device_code)

    def query_user_grant(self, user_code):
        return USER_GRANTS.get(user_code)

    def validate_device_credential(self, credential):
        code = credential["device_code"]
        now, last = time.time(), LAST_POLL.get(code)
        gap = None if last is None else round(now - last, 3)
        log = POLLS.setdefault(credential.get_user_code(), [])
        try:
            if credential.get_client_id() == "mailtun-slow" and not credential.is_expired():
                LAST_POLL[code] = now
                # RFC 8628 3.5: after each slow_down the client polls 5 s less often.
                # A little leeway for the request's own travel time.
                need = max(SLOW_MIN_GAP, DeviceEndpoint.INTERVAL + 5 * credential.get("slow_downs", 0))
                if gap is not None and gap < need - 0.25:
                    credential["slow_downs"] = credential.get("slow_downs", 0) + 1
                    raise SlowDownError()
            user = super().validate_device_credential(credential)
        except OAuth2Error as e:
            log.append({"outcome": e.error, "gap": gap})
            raise
        log.append({"outcome": "ok", "gap": gap})
        return user

    def should_slow_down(self, credential):
        # `mailtun-slow`: decided above, on every poll.
        if credential.get_client_id() == "mailtun-slow":
            return False
        # The second poll within 1 s of the previous one is told to slow down (once).
        code = credential["device_code"]
        now, last = time.time(), LAST_POLL.get(code)
        LAST_POLL[code] = now
        if last is not None and now - last < 1 and not credential.get("slowed"):
            credential["slowed"] = True
            return True
        return False


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INTERVAL = 1
    EXPIRES_IN = int(os.environ.get("IDP_DEVICE_EXPIRES", "60"))

    def get_verification_uri(self):
        return BASE + "/device"

    def create_endpoint_response(self, req):
        status, data, headers = super().create_endpoint_response(req)
        # A client that authenticated with HTTP Basic has no client_id in the form.
        DEVICE[data["device_code"]]["client_id"] = req.client.get_client_id()
        if req.client_id == "mailtun-brief":
            data["expires_in"] = 2  # a code that expires before anyone approves it
        return status, data, headers

    def save_device_credential(self, client_id, scope, data):
        cred = DeviceCredentialDict(dict(data, client_id=client_id, scope=scope,
                                         expires_at=int(time.time()) + data["expires_in"]))
        DEVICE[data["device_code"]] = cred


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic"]

    def query_token(self, token_string, token_type_hint):
        if token_type_hint == "refresh_token":
            return find_refresh(token_string)
        return find_access(token_string) or find_refresh(token_string)

    def introspect_token(self, token):
        return {"active": True, "client_id": token.client_id, "token_type": "Bearer",
                "username": token.user.name, "scope": token.scope,
                "sub": token.user.name, "exp": token.issued_at + token.expires_in,
                "iat": token.issued_at}

    def check_permission(self, token, client, req):
        return client.get_client_id() == "dovecot"

    def authenticate_token(self, req, client):
        t = super().authenticate_token(req, client)
        # An expired or revoked token is inactive (Authlib then answers {"active": false}).
        if t is None or t.is_expired() or t.access_revoked:
            return None
        if req.form.get("token") == t.refresh_token:
            return None  # only access tokens open a mailbox
        return t


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string, token_type_hint):
        return find_refresh(token_string) or find_access(token_string)

    def revoke_token(self, token, req):
        # Revoking either token ends the whole grant (RFC 7009 2.1 allows it).
        token.access_revoked = token.refresh_revoked = True


server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
server.register_grant(RefreshTokenGrant)
server.register_grant(DeviceCodeGrant)
server.register_endpoint(DeviceEndpoint)
server.register_endpoint(Introspection)
server.register_endpoint(Revocation)


def check_login():
    user, pw = request.form.get("username", ""), request.form.get("password", "")
    if user in USERS and secrets.compare_digest(USERS[user], pw):
        return User(user)
    return None


LOGIN_FORM = """<form method="post">
<input name="username"><input name="password" type="password">
<button>Sign in</button></form>"""


@app.route("/authorize", methods=["GET", "POST"])
def authorize():
    if request.method == "GET":
        try:
            server.get_consent_grant(end_user=None)
        except Exception as e:  # an invalid request: shown, never redirected
            return f"invalid authorization request: {e}", 400
        return LOGIN_FORM
    user = check_login()
    if user is None:
        return "wrong username or password", 403
    return server.create_authorization_response(grant_user=user)


@app.route("/token", methods=["POST"])
def issue_token():
    return server.create_token_response()


@app.route("/device_authorization", methods=["POST"])
def device_authorization():
    return server.create_endpoint_response(DeviceEndpoint.ENDPOINT_NAME)


@app.route("/device", methods=["GET", "POST"])
def device():
    if request.method == "GET":
        return '<form method="post"><input name="user_code">' + LOGIN_FORM[19:]
    user = check_login()
    code = request.form.get("user_code", "")
    if user is None:
        return "wrong username or password", 403
    if not any(c.get_user_code() == code for c in DEVICE.values()):
        return "unknown code", 404
    USER_GRANTS[code] = (user, request.form.get("deny") is None)
    return "device approved"


@app.route("/introspect", methods=["POST"])
def introspect():
    return server.create_endpoint_response(Introspection.ENDPOINT_NAME)


@app.route("/revoke", methods=["POST"])
def revoke():
    return server.create_endpoint_response(Revocation.ENDPOINT_NAME)


@app.route("/.well-known/openid-configuration")
@app.route("/.well-known/oauth-authorization-server")
def discovery():
    return jsonify({
        "issuer": BASE,
        "authorization_endpoint": BASE + "/authorize",
        "token_endpoint": BASE + "/token",
        "device_authorization_endpoint": BASE + "/device_authorization",
        "revocation_endpoint": BASE + "/revoke",
        "introspection_endpoint": BASE + "/introspect",
        "scopes_supported": SCOPES.split(),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token",
                                  _DeviceCodeGrant.GRANT_TYPE],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic",
                                                  "client_secret_post"],
    })


def test_hook_user():
    peer = request.remote_addr
    if peer is None or not (peer.startswith("127.") or peer in HOOK_PEERS):
        return None
    return request.form.get("username")


@app.route("/test/revoke-user", methods=["POST"])
def revoke_user():
    name = test_hook_user()
    for t in TOKENS:
        if t.user.name == name:
            t.access_revoked = t.refresh_revoked = True
    return jsonify({"revoked": True})


@app.route("/test/reset-user", methods=["POST"])
def reset_user():
    name, client = test_hook_user(), request.form.get("client_id")
    TOKENS[:] = [t for t in TOKENS
                 if not (t.user.name == name and client in (None, t.client_id))]
    return jsonify({"reset": True})


@app.route("/test/tokens")
def tokens():
    # Every token ever issued to the user: for tests that check none of them leaks.
    name = request.args.get("username")
    out = []
    for t in TOKENS:
        if t.user.name == name:
            out += [t.access_token] + ([t.refresh_token] if t.refresh_token else [])
    return jsonify({"values": out})


@app.route("/test/stats")
def stats():
    client = request.args.get("client_id")
    mine = [t for t in TOKENS if t.user.name == request.args.get("username")
            and client in (None, t.client_id)]
    return jsonify({"tokens": len(mine),
                    "grants": sum(1 for t in mine if not t.refresh_revoked)})


@app.route("/test/polls")
def polls():
    return jsonify({"polls": POLLS.get(request.args.get("user_code", ""), [])})


if __name__ == "__main__":
    app.run(host=ADDR, port=PORT, ssl_context=(CERT, KEY), threaded=True)
