"""External identity providers: JWTs verified with the issuer's JWKS, opaque tokens introspected.

A real issuer runs on loopback (aiohttp in its own thread): JWK sets it can rotate, hits
counted, and an RFC 7662 endpoint that checks the gateway's client credentials. The verifier
runs against a hand-built snapshot, as the data plane's runtime would hold it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import unquote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings

from proxy.idp import ExpiringCache, ExternalTokenVerifier
from proxy.snapshot import IdentityProviderEntry, Snapshot, TenantEntry
from tests.live import wait_until

ISSUER = "https://login.bakery.example/realms/staff"
AUDIENCE = "bakery-api"
CLIENT_ID, CLIENT_SECRET = "gateway", "s3cret/+="
ROLE_MAPPING = {"bakery-admin": "admin", "baker": "member"}


# --- A real issuer on loopback --------------------------------------------------------------


@dataclass
class SigningKey:
    kid: str
    private: object
    algorithm: str = "RS256"

    def jwk(self) -> dict:
        algorithm_class = jwt.algorithms.ECAlgorithm if self.algorithm.startswith("ES") else (
            jwt.algorithms.RSAAlgorithm
        )  # fmt: skip
        public = json.loads(algorithm_class.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, claims: dict, **header) -> str:
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class FakeIssuer:
    """JWK sets by name at /jwks/<name>.json and introspection at /introspect/<name>."""

    def __init__(self) -> None:
        self.key_sets: dict[str, list[dict]] = {}
        self.introspection: dict[str, dict] = {}  # token -> the endpoint's answer
        self.introspection_requests: list[dict] = []
        self.jwks_delay = 0.0
        self._hits: Counter = Counter()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def jwks_url(self, name: str = "main") -> str:
        return f"{self.url}/jwks/{name}.json"

    def jwks_hits(self, name: str = "main") -> int:
        with self._lock:
            return self._hits[name]

    def start(self) -> FakeIssuer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "issuer did not start"
        return self

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/jwks/{name}.json", self._jwks)
        app.router.add_post("/introspect/{name}", self._introspect)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self._runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.loop.run_until_complete(web.SockSite(self._runner, sock).start())
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _jwks(self, request):
        from aiohttp import web

        name = request.match_info["name"]
        with self._lock:
            self._hits[name] += 1
        await asyncio.sleep(self.jwks_delay)
        if name not in self.key_sets:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"keys": self.key_sets[name]})

    async def _introspect(self, request):
        from aiohttp import web

        form = await request.post()
        with self._lock:
            self.introspection_requests.append({
                "endpoint": request.match_info["name"],
                "content_type": request.content_type,
                "form": dict(form),
            })  # fmt: skip
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        client_id, _, secret = base64.b64decode(credentials or "").decode().partition(":")
        if scheme != "Basic" or (unquote(client_id), unquote(secret)) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response(self.introspection.get(form.get("token"), {"active": False}))


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    def rsa_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return {
        "current": SigningKey("2024-a", rsa_key()),
        "next": SigningKey("2024-b", rsa_key()),
        "attacker": SigningKey("2024-a", rsa_key()),
        "partner": SigningKey("partner-1", rsa_key()),
        "ec": SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()), "ES256"),
    }


@pytest.fixture
def issuer(keys):
    server = FakeIssuer().start()
    server.key_sets["main"] = [keys["current"].jwk()]
    yield server
    server.stop()


def provider(server: FakeIssuer, **fields) -> IdentityProviderEntry:
    values = {
        "id": 1, "issuer": ISSUER, "jwks_url": server.jwks_url(), "introspection_url": "",
        "client_id": "", "client_secret": "", "audience": AUDIENCE, "algorithms": ("RS256",),
        "tenant_claim": "org", "default_tenant": None, "roles_claim": "roles",
        "scopes_claim": "scope", "role_mapping": ROLE_MAPPING,
    }  # fmt: skip
    values.update(fields)
    return IdentityProviderEntry(**values)


def introspecting(server: FakeIssuer, endpoint: str = "main", **fields) -> IdentityProviderEntry:
    values = {
        "id": 2, "issuer": "https://auth.partner.example", "jwks_url": "",
        "introspection_url": f"{server.url}/introspect/{endpoint}", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "audience": "",
    }  # fmt: skip
    values.update(fields)
    return provider(server, **values)


def snapshot(*providers: IdentityProviderEntry, tenants=("acme", "globex")) -> Snapshot:
    entries = {
        slug: TenantEntry(slug, "standard", False, "", False, "active", float("inf")) for slug in tenants
    }
    return Snapshot(
        version=1, tenants=entries, identity_providers={p.issuer: p for p in providers},
        loaded=True,
    )  # fmt: skip


@pytest.fixture
async def make_verifier(issuer):
    """Verifiers on a runtime-like object (`.snapshot`), closed at teardown."""
    made = []

    def make(*providers, runtime=None, **options) -> ExternalTokenVerifier:
        runtime = runtime or SimpleNamespace(snapshot=snapshot(*(providers or [provider(issuer)])))
        verifier = ExternalTokenVerifier(runtime, own_issuer=settings.JWT_ISSUER, **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "org": "acme", "jti": uuid.uuid4().hex,
        "roles": ["bakery-admin", "baker", "auditor"], "scope": "read write",
        "iat": now, "exp": now + 300,
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- JWTs verified with the issuer's JWKS ---------------------------------------------------


async def test_valid_token_becomes_an_identity_with_mapped_tenant_roles_and_scopes(
    keys, issuer, make_verifier
):
    verifier = make_verifier()
    payload = claims()
    token = keys["current"].sign(payload)

    assert verifier.issuer_of(token) == ISSUER
    identity = await verifier.verify(token)

    assert identity is not None
    assert identity.kind == "jwt"
    assert identity.subject == "idp1:alice"
    assert identity.tenant == "acme"
    assert identity.roles == {"admin", "member"}  # "auditor" has no mapping: dropped
    assert identity.scopes == {"read", "write"}
    assert identity.jti == f"idp1:{payload['jti']}"
    assert identity.expires_at == payload["exp"]
    assert identity.rate_key == "user:idp1:alice"
    assert issuer.jwks_hits() == 1


async def test_claim_shapes_and_tenant_fallbacks(keys, issuer, make_verifier):
    sign = keys["current"].sign
    with_default = make_verifier(provider(issuer, default_tenant="globex"))
    nested = make_verifier(provider(issuer, roles_claim="realm_access.roles", scopes_claim="scp"))
    no_default = make_verifier()

    comma_roles = await no_default.verify(sign(claims(roles="baker, bakery-admin", scope=["read"])))
    unknown_tenant = await with_default.verify(sign(claims(org="initech")))
    no_tenant = await with_default.verify(sign(claims(org=None)))
    orphan = await no_default.verify(sign(claims(org="initech")))
    keycloak = await nested.verify(
        sign(claims(roles=None, realm_access={"roles": ["baker"]}, scp=["read", "write"]))
    )

    assert comma_roles.roles == {"member", "admin"} and comma_roles.scopes == {"read"}
    assert unknown_tenant.tenant == "globex"  # not a known tenant slug: the provider's default
    assert no_tenant.tenant == "globex"
    assert orphan.tenant is None
    assert keycloak.roles == {"member"} and keycloak.scopes == {"read", "write"}


def _forged(case: str, keys: dict[str, SigningKey], issuer: FakeIssuer) -> str:
    current, now = keys["current"], int(time.time())
    unsigned = b64({"alg": "HS256", "typ": "JWT", "kid": current.kid}) + "." + b64(claims())
    # The classic confusion attack: HMAC keyed with the issuer's public key.
    hs_signature = hmac.new(current.public_pem(), unsigned.encode(), hashlib.sha256).digest()
    attacker_jwk = keys["attacker"].jwk()
    issuer.key_sets["evil"] = [attacker_jwk]
    builders = {
        "alg-none": lambda: b64({"alg": "none", "kid": current.kid}) + "." + b64(claims()) + ".",
        "hs256-with-public-key": lambda: unsigned + "." + b64(hs_signature),
        "wrong-aud": lambda: current.sign(claims(aud="another-api")),
        "missing-aud": lambda: current.sign(claims(aud=None)),
        "expired": lambda: current.sign(claims(exp=now - 60, iat=now - 400)),
        "missing-exp": lambda: current.sign(claims(exp=None)),
        "not-yet-valid": lambda: current.sign(claims(nbf=now + 600)),
        "missing-sub": lambda: current.sign(claims(sub=None)),
        "other-key-same-kid": lambda: keys["attacker"].sign(claims()),
        "embedded-jwk": lambda: keys["attacker"].sign(claims(), jwk=attacker_jwk),
        "jku-to-attacker-set": lambda: keys["attacker"].sign(claims(), jku=issuer.jwks_url("evil")),
        "partner-key": lambda: keys["partner"].sign(claims()),
        "algorithm-not-pinned": lambda: keys["ec"].sign(claims()),
        "unknown-issuer": lambda: current.sign(claims(iss="https://evil.example")),
        "issuer-not-exact": lambda: current.sign(claims(iss=ISSUER + "/")),
        "garbage": lambda: "eyJ.not.a-token",
    }
    return builders[case]()


FORGED = [
    "alg-none", "hs256-with-public-key", "wrong-aud", "missing-aud", "expired", "missing-exp",
    "not-yet-valid", "missing-sub", "other-key-same-kid", "embedded-jwk", "jku-to-attacker-set",
    "partner-key", "algorithm-not-pinned", "unknown-issuer", "issuer-not-exact", "garbage",
]  # fmt: skip


@pytest.mark.parametrize("case", FORGED)
async def test_bad_tokens_are_refused(keys, issuer, make_verifier, case):
    # HS256 listed by mistake and a partner's key in the set change nothing.
    verifier = make_verifier(provider(issuer, algorithms=("RS256", "HS256")))
    issuer.key_sets["main"].append(keys["ec"].jwk())
    token = _forged(case, keys, issuer)

    assert await verifier.verify(token) is None
    assert issuer.jwks_hits("evil") == 0  # header-supplied key locations are never followed


async def test_own_and_unknown_issuers_are_not_external(keys, issuer, make_verifier):
    verifier = make_verifier(provider(issuer), provider(issuer, id=9, issuer=settings.JWT_ISSUER))
    own = keys["current"].sign(claims(iss=settings.JWT_ISSUER))
    unknown = keys["current"].sign(claims(iss="https://elsewhere.example"))

    for token in (own, unknown, "opaque-token-value"):
        assert verifier.issuer_of(token) is None
        assert verifier.verification_for(token) is None  # no introspecting provider either
        assert await verifier.verify(token) is None
    assert issuer.jwks_hits() == 0


async def test_verified_tokens_are_cached_until_they_expire(keys, issuer, make_verifier):
    verifier = make_verifier(leeway=0)
    lasting = keys["current"].sign(claims())
    exp = int(time.time()) + 2
    short = keys["current"].sign(claims(exp=exp))

    first = await verifier.verify(lasting)
    assert await verifier.verify(lasting) is first  # the cached identity itself
    assert await verifier.verify(short) is not None
    await asyncio.sleep(exp - time.time() + 0.1)

    assert await verifier.verify(short) is None
    assert issuer.jwks_hits() == 1


async def test_concurrent_first_requests_share_one_jwks_fetch(keys, issuer, make_verifier):
    verifier = make_verifier()
    issuer.jwks_delay = 0.2
    tokens = [keys["current"].sign(claims(sub=f"user-{n}")) for n in range(20)]

    identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))

    assert [i.subject for i in identities] == [f"idp1:user-{n}" for n in range(20)]
    assert issuer.jwks_hits() == 1


async def test_rotated_key_is_picked_up_after_exactly_one_refetch(keys, issuer, make_verifier):
    verifier = make_verifier(refetch_interval=1.0)
    assert await verifier.verify(keys["current"].sign(claims())) is not None
    assert issuer.jwks_hits() == 1

    # When the issuer rotates to a new key and kid
    issuer.key_sets["main"] = [keys["next"].jwk()]
    rotated = keys["next"].sign(claims())
    too_soon = await verifier.verify(rotated)
    await asyncio.sleep(1.05)
    after_interval = await verifier.verify(rotated)
    again = await verifier.verify(keys["next"].sign(claims()))

    # Then the new key verifies after one refetch, not before the interval, and only once
    assert too_soon is None
    assert after_interval is not None and again is not None
    assert issuer.jwks_hits() == 2
    assert await verifier.verify(keys["current"].sign(claims())) is None  # retired key
    assert issuer.jwks_hits() == 2


async def test_spraying_random_kids_does_not_hammer_the_issuer(keys, issuer, make_verifier):
    fresh = make_verifier()
    warmed = make_verifier()
    assert await warmed.verify(keys["current"].sign(claims())) is not None
    assert issuer.jwks_hits() == 1

    def spray():
        return [keys["current"].sign(claims(), kid=uuid.uuid4().hex) for _ in range(50)]

    concurrent = await asyncio.gather(*(fresh.verify(t) for t in spray()))
    sequential = [await fresh.verify(t) for t in spray()]
    after_warm_up = await asyncio.gather(*(warmed.verify(t) for t in spray()))

    assert set(concurrent + sequential + after_warm_up) == {None}
    assert issuer.jwks_hits() == 2  # one fetch per verifier, within the refetch interval
    assert await fresh.verify(keys["current"].sign(claims())) is not None
    assert issuer.jwks_hits() == 2


async def test_unreachable_jwks_fails_closed_and_is_retried_sparingly(keys, issuer, make_verifier):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    down = make_verifier(provider(issuer, jwks_url=f"http://127.0.0.1:{closed_port}/jwks.json"))
    missing = make_verifier(provider(issuer, jwks_url=issuer.jwks_url("gone")))
    token = keys["current"].sign(claims())

    assert await down.verify(token) is None
    for _ in range(10):
        assert await missing.verify(token) is None
    assert issuer.jwks_hits("gone") == 1


async def test_snapshot_swaps_are_honoured(keys, issuer, make_verifier):
    runtime = SimpleNamespace(snapshot=snapshot(provider(issuer)))
    verifier = make_verifier(runtime=runtime)
    old = keys["current"].sign(claims())
    assert await verifier.verify(old) is not None

    # An unrelated config change: equal provider settings in a new snapshot keep the caches
    runtime.snapshot = snapshot(provider(issuer))
    assert await verifier.verify(old) is not None
    assert issuer.jwks_hits() == 1

    # The provider moves to a new JWKS URL holding only the next key
    issuer.key_sets["second"] = [keys["next"].jwk()]
    runtime.snapshot = snapshot(provider(issuer, jwks_url=issuer.jwks_url("second")))
    assert await verifier.verify(old) is None  # the cached identity is not trusted any more
    assert await verifier.verify(keys["next"].sign(claims())) is not None
    assert issuer.jwks_hits("second") == 1

    # The provider is removed (or disabled)
    runtime.snapshot = snapshot()
    assert await verifier.verify(keys["next"].sign(claims())) is None
    assert verifier.issuer_of(old) is None


async def test_elliptic_curve_keys_when_the_provider_allows_es256(keys, issuer, make_verifier):
    verifier = make_verifier(provider(issuer, algorithms=("ES256",)))
    issuer.key_sets["main"] = [keys["current"].jwk(), keys["ec"].jwk()]

    assert (await verifier.verify(keys["ec"].sign(claims()))).subject == "idp1:alice"
    assert await verifier.verify(keys["current"].sign(claims())) is None  # RS256 not allowed


# --- Opaque tokens: RFC 7662 introspection --------------------------------------------------


def active(**fields) -> dict:
    answer = {"active": True, "sub": "svc-7", "exp": int(time.time()) + 300, "org": "globex",
              "roles": "baker", "scope": "read", "client_id": "pos-terminal"}  # fmt: skip
    answer.update(fields)
    return {k: v for k, v in answer.items() if v is not None}


async def test_active_token_is_introspected_once_and_cached(issuer, make_verifier):
    verifier = make_verifier(provider(issuer), introspecting(issuer))
    issuer.introspection["opaque-1"] = active()

    assert verifier.should_introspect("opaque-1")
    identity = await verifier.verification_for("opaque-1")
    again = await verifier.introspect("opaque-1")

    assert identity is not None and again is identity
    assert identity.kind == "introspection"
    assert identity.subject == "idp2:svc-7"
    assert (identity.tenant, identity.roles, identity.scopes) == ("globex", {"member"}, {"read"})
    [request] = issuer.introspection_requests
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {"token": "opaque-1", "token_type_hint": "access_token"}


async def test_inactive_token_is_refused_and_the_answer_cached_briefly(issuer, make_verifier):
    verifier = make_verifier(introspecting(issuer))

    assert await verifier.introspect("revoked-token") is None
    assert await verifier.introspect("revoked-token") is None
    assert len(issuer.introspection_requests) == 1


async def test_introspection_failure_is_refused_but_not_cached(issuer, make_verifier):
    verifier = make_verifier(introspecting(issuer, client_secret="wrong"))
    issuer.introspection["opaque-2"] = active()

    assert await verifier.introspect("opaque-2") is None  # the endpoint answered 401
    assert await verifier.introspect("opaque-2") is None
    assert len(issuer.introspection_requests) == 2


async def test_expired_introspection_results_are_not_accepted(issuer, make_verifier):
    verifier = make_verifier(introspecting(issuer), leeway=0)
    now = int(time.time())
    issuer.introspection["stale"] = active(exp=now - 60)
    issuer.introspection["short"] = active(exp=now + 2)
    issuer.introspection["odd-exp"] = active(exp="tomorrow")

    assert await verifier.introspect("stale") is None
    assert await verifier.introspect("odd-exp") is None
    assert await verifier.introspect("short") is not None
    await asyncio.sleep(now + 2 - time.time() + 0.1)
    assert await verifier.introspect("short") is None  # the cache lapsed with exp; asked again
    assert [r["form"]["token"] for r in issuer.introspection_requests].count("short") == 2


async def test_the_lowest_id_introspecting_provider_is_asked(issuer, make_verifier):
    later = introspecting(issuer, "later", id=7, issuer="https://later.example")
    first = introspecting(issuer, "first", id=3, issuer="https://first.example")
    verifier = make_verifier(later, first)
    issuer.introspection["opaque-3"] = active(sub="bob", aud=["bakery-api"])

    identity = await verifier.introspect("opaque-3")

    assert identity.subject == "idp3:bob"
    assert [r["endpoint"] for r in issuer.introspection_requests] == ["first"]


async def test_introspected_audience_is_checked_when_configured(issuer, make_verifier):
    verifier = make_verifier(introspecting(issuer, audience=AUDIENCE))
    issuer.introspection["ours"] = active(aud=[AUDIENCE, "other"])
    issuer.introspection["theirs"] = active(aud="another-api")

    assert await verifier.introspect("ours") is not None
    assert await verifier.introspect("theirs") is None


async def test_jwt_of_a_provider_without_jwks_is_introspected(keys, issuer, make_verifier):
    partner = introspecting(issuer)
    verifier = make_verifier(partner)
    token = keys["partner"].sign(claims(iss=partner.issuer))
    issuer.introspection[token] = active(sub="carol")

    assert not verifier.should_introspect(token)  # a JWT goes through verify()
    identity = await verifier.verification_for(token)

    assert identity.subject == "idp2:carol" and identity.kind == "introspection"
    assert issuer.jwks_hits() == 0


# --- The bounded cache ----------------------------------------------------------------------


def test_expiring_cache_drops_expired_entries_first_then_the_oldest():
    cache = ExpiringCache(limit=4)
    now = 1000.0
    cache.put("expired-1", 1, now - 1, now - 10)
    cache.put("expired-2", 2, now - 1, now - 10)
    for key in ("a", "b"):
        cache.put(key, key, now + 60, now)
    cache.put("c", "c", now + 60, now)  # full: the expired entries go, the live ones stay
    assert [cache.get(k, now) for k in ("a", "b", "c")] == ["a", "b", "c"]
    cache.put("d", "d", now + 60, now)
    cache.put("e", "e", now + 60, now)  # full of live entries: the newest half stays
    assert len(cache) <= 4
    assert cache.get("e", now) == "e" and cache.get("a", now) is None
    assert cache.get("d", now + 61) is None


# --- From the registry: model, snapshot, admin and management API ---------------------------


def test_a_registered_provider_verifies_tokens_through_the_compiled_snapshot(keys, issuer, tenant, db):
    from proxy.snapshot import compile_snapshot
    from tenancy.models import IdentityProvider

    IdentityProvider.objects.create(
        name="Staff SSO", issuer=ISSUER, jwks_url=issuer.jwks_url(), audience=AUDIENCE,
        tenant_claim="org", default_tenant=tenant, role_mapping=ROLE_MAPPING,
    )  # fmt: skip
    IdentityProvider.objects.create(
        name="Disabled", issuer="https://off.example", jwks_url=issuer.jwks_url(), enabled=False
    )
    runtime = SimpleNamespace(snapshot=compile_snapshot())

    async def verify(token):
        verifier = ExternalTokenVerifier(runtime)
        try:
            return await verifier.verify(token)
        finally:
            await verifier.close()

    identity = asyncio.run(verify(keys["current"].sign(claims(org=None))))
    disabled = asyncio.run(verify(keys["current"].sign(claims(iss="https://off.example"))))

    assert identity.tenant == "acme" and identity.roles == {"admin", "member"}
    assert disabled is None


def _provider_body(**fields) -> dict:
    body = {
        "name": "Partner SSO", "issuer": "https://auth.partner.example",
        "introspection_url": "https://auth.partner.example/introspect", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "default_tenant": "acme",
        "role_mapping": {"baker": "member"},
    }  # fmt: skip
    body.update(fields)
    return body


def test_management_api_never_returns_the_client_secret(staff_client, tenant):
    from tenancy.models import IdentityProvider

    url = "/api/manage/identity-providers/"
    created = staff_client.post(url, _provider_body(), format="json")
    provider_id = created.json()["id"]
    patched = staff_client.patch(f"{url}{provider_id}/", {"audience": AUDIENCE}, format="json")
    listed = staff_client.get(url, {"issuer": "https://auth.partner.example"})

    assert created.status_code == 201, created.content
    for body in (created.json(), patched.json(), listed.json()["results"][0]):
        assert "client_secret" not in body and body["has_client_secret"] is True
        assert CLIENT_SECRET not in json.dumps(body)
    assert patched.json()["default_tenant"] == "acme"
    assert IdentityProvider.objects.get(pk=provider_id).client_secret == CLIENT_SECRET


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"algorithms": ["HS256"]}, "algorithms"),
        ({"introspection_url": ""}, "jwks_url"),
        ({"client_id": ""}, "client_id"),
    ],
)
def test_management_api_refuses_unusable_providers(staff_client, tenant, fields, field):
    response = staff_client.post("/api/manage/identity-providers/", _provider_body(**fields), format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_management_api_is_staff_only(member_client):
    assert member_client.get("/api/manage/identity-providers/").status_code == 403


def test_admin_shows_a_password_field_that_never_renders_the_secret(staff_client, tenant):
    from tenancy.models import IdentityProvider

    provider = IdentityProvider.objects.create(
        name="Partner SSO", issuer="https://auth.partner.example", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, introspection_url="https://auth.partner.example/introspect",
    )  # fmt: skip
    change_url = f"/admin/tenancy/identityprovider/{provider.pk}/change/"
    page = staff_client.get(change_url)
    changelist = staff_client.get("/admin/tenancy/identityprovider/", {"q": "partner"})

    assert page.status_code == 200
    html = page.content.decode()
    assert 'type="password" name="client_secret"' in html
    assert CLIENT_SECRET not in html
    assert changelist.status_code == 200 and 'name="form-0-enabled"' in changelist.content.decode()

    form = {
        "name": provider.name, "issuer": provider.issuer, "enabled": "on",
        "introspection_url": provider.introspection_url, "client_id": CLIENT_ID,
        "client_secret": "", "tenant_claim": "tenant", "roles_claim": "roles",
        "scopes_claim": "scope", "role_mapping": "{}", "algorithms": ["RS256"],
        "audience": AUDIENCE,
    }  # fmt: skip
    kept = staff_client.post(change_url, form)
    provider.refresh_from_db()
    assert kept.status_code == 302, kept.content.decode()[:2000]
    assert (provider.audience, provider.client_secret) == (AUDIENCE, CLIENT_SECRET)

    refused = staff_client.post(change_url, {**form, "algorithms": ["HS256"]})
    assert refused.status_code == 200 and "HS256" in refused.content.decode()

    cleared = staff_client.post(change_url, {**form, "clear_client_secret": "on"})
    provider.refresh_from_db()
    assert cleared.status_code == 302 and provider.client_secret == ""


# --- Through a live gateway -----------------------------------------------------------------


def test_a_live_gateway_accepts_external_tokens_and_refuses_unknown_issuers(
    keys, issuer, make_service, make_tenant, upstream, gateway
):
    from tenancy.models import IdentityProvider

    make_tenant("acme")
    make_service("sales", targets=[upstream.url], auth_required=True, write_roles=["admin"])
    IdentityProvider.objects.create(
        name="Partner SSO", issuer=ISSUER, jwks_url=issuer.jwks_url(), audience=AUDIENCE,
        tenant_claim="org", role_mapping=ROLE_MAPPING,
    )  # fmt: skip
    gateway.sync()
    gateway.runtime.external_tokens._refetch_interval = 1.0  # keep the rotation check short
    external = {"Authorization": f"Bearer {keys['current'].sign(claims())}"}
    assert httpx.delete(f"{gateway.url}/api/v1/sales/echo", headers=external).status_code == 200
    received = upstream.hits("/echo")[0].headers
    assert received["x-tenant-id"] == "acme"
    assert received["x-user-roles"] == "admin,member"
    assert received["x-user-id"].endswith(":alice")
    unknown = keys["attacker"].sign(claims(iss="https://unknown.example"))
    response = httpx.get(f"{gateway.url}/api/v1/sales/x", headers={"Authorization": f"Bearer {unknown}"})
    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_ERROR"
    # Rotation at the issuer: the new kid verifies without a gateway restart.
    issuer.key_sets["main"] = [keys["current"].jwk(), keys["next"].jwk()]
    rotated = {"Authorization": f"Bearer {keys['next'].sign(claims(jti=uuid.uuid4().hex))}"}
    wait_until(  # the unknown-kid refetch interval bounds how soon
        lambda: httpx.get(f"{gateway.url}/api/v1/sales/x", headers=rotated).status_code == 200,
        5,
        interval=0.5,
        message="the rotated key to be picked up",
    )
