#!/usr/bin/env python3
"""`./dev demo`: a scripted walk through Chronicle against the running system.

Two tenants, their admins and users; customers created, changed and archived; a search,
a history and an audit query; and one refused cross-tenant attempt. Prints each request
and what came back. Python standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

API = "http://" + os.environ.get("CHRONICLE_HTTP_ADDR", "127.0.0.1:8080")
ADMIN_USER, ADMIN_PASSWORD = os.environ.get(
    "CHRONICLE_BOOTSTRAP_ADMIN", "platform-admin:dev-admin-password"
).split(":", 1)
PASSWORD = "demo-password-123"


def call(method, path, token=None, body=None, headers=None, quiet=False):
    """One HTTP request; returns (status, parsed body, response headers)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), error.headers
    parsed = json.loads(raw) if raw else None
    if not quiet:
        shown = json.dumps(parsed, ensure_ascii=False)
        print(f"  {method} {path} -> {status} {shown[:300]}{'...' if len(shown) > 300 else ''}")
    return status, parsed, response_headers


def expect(status, wanted, what):
    if status != wanted:
        sys.exit(f"demo: {what} answered {status}, expected {wanted}")


def step(title):
    print(f"\n== {title}")


def token(tenant, username, password):
    body = {"username": username, "password": password}
    if tenant:
        body["tenant"] = tenant
    status, answer, _ = call("POST", "/v1/auth/token", body=body, quiet=True)
    expect(status, 200, f"login of {username}")
    print(f"  POST /v1/auth/token ({tenant or 'platform'}/{username}) -> 200 token, expires in {answer['expires_in']} s")
    return answer["access_token"]


def eventually(path, tok, done, seconds=30):
    """GETs until done(body) or the time is up (the projections are eventually consistent)."""
    deadline = time.time() + seconds
    while True:
        status, body, _ = call("GET", path, tok, quiet=True)
        if (status == 200 and done(body)) or time.time() > deadline:
            return call("GET", path, tok)


def main():
    try:
        status, _, _ = call("GET", "/readyz", quiet=True)
    except OSError as error:
        sys.exit(f"demo: the API at {API} does not answer ({error}); run ./dev up first")
    expect(status, 200, "/readyz")
    run = uuid.uuid4().hex[:6]
    acme, globex = f"acme-{run}", f"globex-{run}"

    step("The platform admin registers two tenants, each with its first admin")
    platform = token(None, ADMIN_USER, ADMIN_PASSWORD)
    for tenant, name in ((acme, "ACME Corp"), (globex, "Globex Inc")):
        status, _, _ = call("POST", "/v1/tenants", platform, {
            "id": tenant, "name": name,
            "admin": {"username": "admin", "password": PASSWORD, "display_name": f"{name} Admin"},
        })
        expect(status, 201, "tenant registration")

    step(f"{acme}'s admin adds a member and a viewer")
    acme_admin = token(acme, "admin", PASSWORD)
    for username, role in (("mia", "member"), ("vic", "viewer")):
        status, _, _ = call("POST", "/v1/users", acme_admin, {
            "username": username, "password": PASSWORD, "display_name": username.title(), "role": role})
        expect(status, 201, "user creation")
    mia = token(acme, "mia", PASSWORD)
    vic = token(acme, "vic", PASSWORD)

    step("Mia creates customers (one with an Idempotency-Key, sent twice)")
    customer = {"name": "Jürgen Müller", "email": "j.mueller@example.de", "phone": "+49 30 1234567",
                "address": {"street": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                "tags": ["vip"]}
    key = {"idempotency-key": f"demo-{run}"}
    status, created, _ = call("POST", "/v1/customers", mia, customer, key)
    expect(status, 201, "customer creation")
    status, replayed, _ = call("POST", "/v1/customers", mia, customer, key)
    print(f"  the retry replayed the first response: same id = {replayed['id'] == created['id']}")
    mueller = created["id"]
    ids = {}
    for name in ("Ada Lovelace", "Grace Hopper"):
        status, answer, _ = call("POST", "/v1/customers", mia, {"name": name, "email": f"{name.split()[0].lower()}@example.com"})
        expect(status, 201, "customer creation")
        ids[name] = answer["id"]

    step("Mia changes Müller's email (If-Match) and archives Grace Hopper")
    status, _, _ = call("PATCH", f"/v1/customers/{mueller}", mia, {"email": "juergen@example.de"}, {"if-match": '"1"'})
    expect(status, 200, "patch")
    status, _, _ = call("PATCH", f"/v1/customers/{mueller}", mia, {"email": "stale@example.de"}, {"if-match": '"1"'})
    print("  a patch with a stale version is refused: 412" if status == 412 else f"  unexpected {status}")
    status, _, _ = call("DELETE", f"/v1/customers/{ids['Grace Hopper']}", mia, headers={"if-match": '"1"'})
    expect(status, 200, "archive")

    step("Vic (viewer) reads Müller back, waiting for the version just written")
    status, _, _ = call("GET", f"/v1/customers/{mueller}?min_version=2", vic)
    expect(status, 200, "read-your-writes")
    status, _, _ = call("GET", "/v1/customers?limit=10", vic)
    status, _, _ = call("POST", "/v1/customers", vic, {"name": "Nope", "email": "nope@example.com"})
    print("  a viewer may not write: 403" if status == 403 else f"  unexpected {status}")

    step("Search: 'Mueller' and a typo 'Mulller' both find Müller")
    for q in ("Mueller", "Mulller"):
        eventually(f"/v1/customers/search?q={q}", vic, lambda body: body["total"] >= 1)

    step("Müller's change history")
    eventually(f"/v1/customers/{mueller}/history", vic, lambda body: len(body["items"]) >= 2)

    step(f"{acme}'s audit log (admin only)")
    status, audit, _ = eventually("/v1/audit?limit=50", acme_admin, lambda body: len(body["items"]) >= 8)
    for item in audit["items"]:
        print(f"    {item['at'][:19]}  {item['event_type']:<20} by {item['actor']['name']:<22} request {item['request_id'][:8]}")

    step(f"{globex}'s admin tries to read {acme}'s customer")
    globex_admin = token(globex, "admin", PASSWORD)
    status, _, _ = call("GET", f"/v1/customers/{mueller}", globex_admin)
    print("  refused exactly as if it did not exist: 404" if status == 404 else f"  UNEXPECTED: {status}")
    status, _, _ = call("GET", "/v1/customers/search?q=Mueller", globex_admin)
    status, _, _ = call("GET", f"/v1/customers/{mueller}", acme_admin, headers={"x-tenant-id": globex})
    print("  and naming the other tenant in X-Tenant-ID: 403" if status == 403 else f"  UNEXPECTED: {status}")

    step("Someone signs up a tenant of their own (CHRONICLE_SIGNUP=open), by host")
    newco = f"newco-{uuid.uuid4().hex[:6]}"
    status, _, _ = call("POST", "/v1/signup", body={
        "name": "NewCo", "admin": {"username": "founder", "password": PASSWORD, "display_name": "Founder"}},
        headers={"host": f"{newco}.localhost", "idempotency-key": str(uuid.uuid4())})
    expect(status, 201, "sign-up")
    status, login, _ = call("POST", "/v1/auth/token", body={"username": "founder", "password": PASSWORD},
                            headers={"host": f"{newco}.localhost"}, quiet=True)
    expect(status, 200, "the founder's login")
    print(f"  the founder logs in at {newco}.localhost: 200, with a refresh token")
    status, refreshed, _ = call("POST", "/v1/auth/refresh", body={"refresh_token": login["refresh_token"]}, quiet=True)
    expect(status, 200, "refresh")
    print("  POST /v1/auth/refresh -> 200: a new access token and a new refresh token")
    status, _, _ = call("POST", "/v1/auth/refresh", body={"refresh_token": login["refresh_token"]}, quiet=True)
    print("  the spent refresh token again: 401, and its whole session ends" if status == 401 else f"  UNEXPECTED: {status}")

    step(f"{acme}'s admin defines a role of the tenant's own and gives it to Vic")
    status, _, _ = call("POST", "/v1/roles", acme_admin, {"name": "editor", "permissions": ["customers:read", "customers:write"]})
    expect(status, 201, "defining a role")
    status, users, _ = call("GET", "/v1/users?limit=10", acme_admin, quiet=True)
    vic_id = next(u["id"] for u in users["items"] if u["username"] == "vic")
    status, _, _ = call("PATCH", f"/v1/users/{vic_id}", acme_admin, {"role": "editor"})
    expect(status, 200, "giving Vic the role")
    time.sleep(1)
    status, _, _ = call("POST", "/v1/customers", vic, {"name": "Ada Lovelace", "email": "ada@example.com"})
    print("  Vic writes now, with the token he already had: 201" if status == 201 else f"  UNEXPECTED: {status}")

    print("\nDemo complete. Kibana (Docker Compose only): ./dev kibana-import, then http://127.0.0.1:5601")


if __name__ == "__main__":
    main()
