"""Redis AUTH from the secret and TLS verified against the CA param.

A real redis-server started with ``--requirepass`` (and, for TLS, ``--tls-port`` with a
throwaway CA made here with ``cryptography``) is reached through the bundle's own client
factory, :func:`shared.redis.get_redis`, configured the way a deployed function is: the
``REDIS_URL`` param without credentials, the ``PACK391_REDIS_AUTH`` secret in the
environment (what a bound secret becomes), ``PACK391_REDIS_CA_CERT`` as PEM text."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import redis as shared_redis
from stack.platform.procs import free_port

PASSWORD = "s3cret-auth-string"


def _start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server on PATH")
    data = tempfile.mkdtemp(prefix="pack391-redis-sec-")
    argv = [server, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", data]
    proc = subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"redis-server did not start: {out}")
            time.sleep(0.05)
    proc.kill()
    _stop(proc)
    pytest.fail("redis-server did not start in 15 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Set the params as a deployed function has them, with fresh clients."""

    def apply(url: str, auth: str | None = None, ca: str | None = None) -> redis.Redis:
        monkeypatch.setenv("REDIS_URL", url)
        monkeypatch.setenv("PACK391_REDIS_TIMEOUT_MS", "3000")
        for name, value in (("PACK391_REDIS_AUTH", auth), ("PACK391_REDIS_CA_CERT", ca)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        shared_redis.reset_clients()
        return shared_redis.get_redis()

    yield apply
    monkeypatch.undo()
    shared_redis.reset_clients()


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[str]:
    port = free_port()
    proc = _start(["--port", str(port), "--requirepass", PASSWORD], port)
    yield f"redis://127.0.0.1:{port}/0"
    _stop(proc)


def test_the_auth_secret_is_sent_and_required(auth_redis: str, configure: object) -> None:
    """With the secret the bundle's client is let in; without it, or with a wrong one,
    redis-server refuses it."""
    client = configure(auth_redis, auth=PASSWORD)  # type: ignore[operator]
    assert client.ping() is True
    client.set("k", "v")
    assert client.get("k") == "v"

    unbound = configure(auth_redis)  # type: ignore[operator]
    with pytest.raises(redis.AuthenticationError):
        unbound.get("k")
    wrong = configure(auth_redis, auth="not-it")  # type: ignore[operator]
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()


def test_the_telemetry_client_uses_the_secret_too(
    auth_redis: str, configure: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(auth_redis, auth=PASSWORD)  # type: ignore[operator]
    monkeypatch.setenv("PACK391_REDIS_TELEMETRY_URL", auth_redis.replace("/0", "/1"))
    assert shared_redis.get_telemetry_redis().ping() is True


# ------------------------------------------------------------------------- TLS


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[str, str, str]]:
    """A redis-server speaking only TLS (with AUTH), its certificate signed by a throwaway
    CA: the URL, that CA's PEM, another CA's PEM."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server on PATH")
    ca_key, ca = _ca("pack391 test Memorystore CA")
    _, other = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("10.0.0.3"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("10.0.0.3"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="pack391-redis-tls-"))
    (folder / "server.crt").write_text(_pem(leaf))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "ca.crt").write_text(_pem(ca))
    port = free_port()
    args = [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(folder / "server.crt"),
        "--tls-key-file", str(folder / "server.key"),
        "--tls-ca-cert-file", str(folder / "ca.crt"),
        "--tls-auth-clients", "no",
        "--requirepass", PASSWORD,
    ]  # fmt: skip
    probe = subprocess.run([server, "--tls-port", "1", "--test-memory", "0"], capture_output=True)
    if b"not supported" in probe.stdout + probe.stderr:  # built without TLS
        pytest.skip("redis-server was built without TLS")
    proc = _start(args, port)
    yield f"rediss://127.0.0.1:{port}/0", _pem(ca), _pem(other)
    _stop(proc)
    shutil.rmtree(folder, ignore_errors=True)


def test_tls_with_the_servers_ca_connects(
    tls_redis: tuple[str, str, str], configure: object
) -> None:
    """The CA param verifies a server whose certificate chains to it (Memorystore's is
    issued for its private address, here not the one connected to: no host name check)."""
    url, ca, _other = tls_redis
    client = configure(url, auth=PASSWORD, ca=ca)  # type: ignore[operator]
    assert client.ping() is True
    # one line of a dotenv file: the PEM's line breaks written as \n
    oneline = configure(url, auth=PASSWORD, ca=ca.replace("\n", "\\n"))  # type: ignore[operator]
    assert oneline.ping() is True


def test_tls_with_a_wrong_ca_or_none_is_refused(
    tls_redis: tuple[str, str, str], configure: object
) -> None:
    """Another CA, or the system's CAs (no param), do not verify the server: no
    connection, whatever the password."""
    url, _ca_pem, other = tls_redis
    wrong = configure(url, auth=PASSWORD, ca=other)  # type: ignore[operator]
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        wrong.ping()
    system = configure(url, auth=PASSWORD)  # type: ignore[operator]
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        system.ping()


def test_the_options_built_for_each_url() -> None:
    build = shared_redis.connection_options
    assert build("redis://10.0.0.3:6379/0", "", "") == {}
    assert build("redis://10.0.0.3:6379/0", "pw", "PEM") == {"password": "pw"}
    assert build("rediss://10.0.0.3:6378/0", "", "") == {"ssl_cert_reqs": "required"}
    assert build("rediss://10.0.0.3:6378/0", "pw", "A\\nB") == {
        "password": "pw",
        "ssl_cert_reqs": "required",
        "ssl_ca_data": "A\nB",
        "ssl_check_hostname": False,
    }
