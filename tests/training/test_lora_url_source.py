"""Issue 14 item 9 and issue 17 item 8, URL sources: https only, public addresses only (also after each redirect),
time limits and the size cap while streaming, and a failed fetch as one line naming the style and the source.

The servers here listen on 127.0.0.1, which the public-address rule refuses; each test that needs one reaches it
as `localhost` through `FetchPolicy(allow_hosts=..., resolve=...)`, passed explicitly.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time

import pytest

from bookbug_assets.providers.base import LoraRef
from bookbug_assets.storage import LocalArtifactStore
from bookbug_assets.styles import ExistingLora, StyleError
from bookbug_assets.training.lora_source import FetchPolicy, LoraSourceError, fetch_lora, hf_source_url
from bookbug_assets.training.pinning import PIN_CHECK, pin_existing_lora
from tests.fakes._http import CA_CERT_FILE, FakeHTTPServer, RecordedRequest, Response
from tests.training.lora_files import FLUX_LORA, NOT_A_LORA, lora_pair, safetensors

NAMES = {"localhost": ["127.0.0.1"], "intranet.example": ["10.1.2.3"], "metadata.example": ["169.254.169.254"],
         "mixed.example": ["93.184.215.14", "192.168.1.20"]}


def resolve(host: str, port: int) -> list[str]:
    return NAMES[host]


def policy(**kw) -> FetchPolicy:
    return FetchPolicy(**{"allow_hosts": frozenset({"localhost"}), "resolve": resolve,
                          "verify": ssl.create_default_context(cafile=CA_CERT_FILE), **kw})


class LoraHost(FakeHTTPServer):
    """A TLS file host: `files` by path, `redirects` path -> Location."""

    server_name = "lora-host"

    def __init__(self) -> None:
        super().__init__(tls=True)
        self.files: dict[str, bytes] = {"/meadow.safetensors": FLUX_LORA, "/page.html": b"<html>Not here</html>",
                                        "/checkpoint.safetensors": NOT_A_LORA, "/secret": b"metadata-token"}
        self.redirects: dict[str, str] = {}

    def handle(self, req: RecordedRequest) -> Response:
        if req.path in self.redirects:
            return Response(302, b"", {"Location": self.redirects[req.path]})
        if req.path in self.files:
            return Response(200, self.files[req.path], content_type="application/octet-stream")
        return Response(404, b"missing", content_type="text/plain")

    def at(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"


@pytest.fixture
def host():
    with LoraHost() as server:
        yield server


def refused(url: str, **kw) -> str:
    with pytest.raises(LoraSourceError) as caught:
        fetch_lora(url, "flux1", policy(**kw))
    return str(caught.value)


def test_a_lora_on_an_allowed_host_is_fetched(host):
    assert fetch_lora(host.at("/meadow.safetensors"), "flux1", policy()) == FLUX_LORA
    assert host.requests[-1].header("Host") == f"localhost:{host.port}"


def test_the_same_server_by_its_loopback_address_is_refused_unasked(host):
    message = refused(f"https://127.0.0.1:{host.port}/meadow.safetensors")
    assert "127.0.0.1 is a loopback address" in message
    assert host.requests == []


@pytest.mark.parametrize("url,reason", [
    ("https://10.1.2.3/x.safetensors", "10.1.2.3 is a private address"),
    ("https://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is a cloud metadata address"),
    ("https://intranet.example/x.safetensors", "intranet.example resolves to 10.1.2.3, which is a private address"),
    ("https://metadata.example/x", "resolves to 169.254.169.254, which is a cloud metadata address"),
    ("https://mixed.example/x", "resolves to 192.168.1.20"),
    ("https://[::1]/x", "loopback"),
    ("https://[::ffff:127.0.0.1]/x", "loopback"),
    ("https://[fe80::1]/x", "link-local"),
    ("https://224.0.0.1/x", "multicast"),
    ("https://240.0.0.1/x", "reserved"),
    ("https://100.100.100.200/x", "cloud metadata"),
    ("https://0.0.0.0/x", "unspecified"),
])
def test_a_non_public_address_is_refused_before_connecting(url, reason):
    assert reason in refused(url)


@pytest.mark.parametrize("url", ["http://localhost/x.safetensors", "ftp://localhost/x", "file:///etc/shadow"])
def test_only_https_is_fetched(url):
    assert "only https" in refused(url)


def test_a_redirect_to_loopback_is_refused(host):
    host.redirects["/moved"] = f"https://127.0.0.1:{host.port}/secret"
    assert "127.0.0.1 is a loopback address" in refused(host.at("/moved"))
    assert [r.path for r in host.requests] == ["/moved"]


def test_a_redirect_to_http_is_refused(host):
    host.redirects["/moved"] = f"http://localhost:{host.port}/meadow.safetensors"
    assert "only https" in refused(host.at("/moved"))


def test_redirects_are_followed_up_to_five(host):
    for i in range(6):
        host.redirects[f"/r{i}"] = f"/r{i + 1}" if i < 5 else "/meadow.safetensors"
    assert fetch_lora(host.at("/r1"), "flux1", policy()) == FLUX_LORA  # five redirects
    assert "more than 5 times" in refused(host.at("/r0"))  # six


@pytest.mark.parametrize("path,reason", [("/page.html", "not a safetensors file"),
                                         ("/checkpoint.safetensors", "no lora_A/lora_B"),
                                         ("/nothing.safetensors", "answered HTTP 404")])
def test_what_is_not_a_lora_is_refused(host, path, reason):
    assert reason in refused(host.at(path))


def test_a_download_over_the_size_cap_is_refused(host):
    host.files["/big.safetensors"] = safetensors(lora_pair("transformer.transformer_blocks.0.attn.to_q", 64, 256))
    assert "over the 4096-byte cap" in refused(host.at("/big.safetensors"), max_bytes=4096)


def test_a_connection_refused_is_one_line_naming_the_source():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = refused(f"https://localhost:{port}/meadow.safetensors?token=s3cr3t")
    assert message.startswith(f"could not fetch https://localhost:{port}/meadow.safetensors?...: ConnectError")
    assert "s3cr3t" not in message and "\n" not in message


# --- servers that never finish ---------------------------------------------------------------------------


class _Endless(socketserver.BaseRequestHandler):
    """200 with no length, then a LoRA followed by zeros for as long as the client reads, a LoRA sent one byte at a
    time, or nothing ("stall")."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
        try:
            if self.server.mode == "stall":
                time.sleep(5)
                return
            if self.server.mode == "trickle":  # a valid LoRA, one byte every 50 ms
                for i in range(len(FLUX_LORA)):
                    if self.server.stopped.is_set():
                        return
                    self.request.sendall(FLUX_LORA[i:i + 1])
                    time.sleep(0.05)
                return
            self.request.sendall(FLUX_LORA[:-1])  # all but the last byte of a valid LoRA, then zeros forever
            while not self.server.stopped.is_set():
                self.request.sendall(b"\0" * 65536)
        except OSError:
            pass  # the client hung up, as it should


@pytest.fixture
def endless():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CA_CERT_FILE.replace("ca.pem", "server.pem"), CA_CERT_FILE.replace("ca.pem", "server.key"))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.stopped, server.mode = threading.Event(), "flood"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.stopped.set()
    server.shutdown()
    server.server_close()


def test_an_endless_response_ends_at_the_size_its_header_declares(endless):
    url = f"https://localhost:{endless.server_address[1]}/lora.safetensors"
    assert "goes on past" in refused(url)


def test_a_trickling_response_ends_at_the_deadline(endless):
    endless.mode = "trickle"
    url = f"https://localhost:{endless.server_address[1]}/lora.safetensors"
    assert "took longer than 0.5 s" in refused(url, deadline_s=0.5)


def test_a_stalled_response_ends_at_the_read_limit(endless):
    endless.mode = "stall"
    url = f"https://localhost:{endless.server_address[1]}/lora.safetensors"
    assert "ReadTimeout" in refused(url, read_s=0.3)


# --- through pin_existing_lora: the style and field are named ------------------------------------------------


def test_refusals_and_fetch_failures_name_the_style_and_field(tmp_path):
    store = LocalArtifactStore(tmp_path / "out")
    hf = ExistingLora(source="hf:alice/meadow-lora/meadow.safetensors")
    # huggingface.co reached at 127.0.0.1:443, where nothing answers TLS for it: the fetch fails.
    offline = FetchPolicy(allow_hosts=frozenset({"huggingface.co"}), resolve=lambda h, p: ["127.0.0.1"],
                          connect_s=2.0, read_s=2.0)
    with pytest.raises(StyleError) as caught:
        pin_existing_lora(store, hf, "meadow", tmp_path, offline)
    assert str(caught.value).startswith(
        "styles/meadow/style.yaml: lora.source: could not fetch "
        "https://huggingface.co/alice/meadow-lora/resolve/main/meadow.safetensors: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(StyleError, match=r"^styles/meadow/style.yaml: lora.source: .*private address"):
        pin_existing_lora(store, ExistingLora(source="https://10.0.0.8/x.safetensors"), "meadow", tmp_path)
    with pytest.raises(StyleError, match=r"^styles/meadow/style.yaml: lora.source: .*outside the models folder"):
        pin_existing_lora(store, ExistingLora(source="/etc/shadow"), "meadow", tmp_path / "models")
    assert not store.exists("styles/meadow/pinned_lora.json")


@pytest.mark.parametrize("source", ["hf:alice/meadow-lora", "hf:alice/../x.safetensors", "hf:alice/r/../x.safetensors",
                                    "hf:alice/r/notes.txt"])
def test_a_malformed_hf_source_is_refused(source):
    with pytest.raises(LoraSourceError, match="hf:"):
        hf_source_url(source)


def test_a_pin_is_reused_and_a_pin_made_before_the_checks_is_checked_again(host, tmp_path):
    store = LocalArtifactStore(tmp_path / "out")
    lora = ExistingLora(source=host.at("/meadow.safetensors"), trigger_word="MDW")
    first = pin_existing_lora(store, lora, "meadow", tmp_path, policy())
    assert store.read_bytes(first.key) == FLUX_LORA
    host.files.clear()
    assert pin_existing_lora(store, lora, "meadow", tmp_path, policy()) == first  # not fetched again

    # An older pin of `source: /etc/shadow` (no check mark) is not trusted: the source is checked and refused.
    _, key = store.put_blob(b"root:$6$hash", ".safetensors")
    legacy = LoraRef(name="old", family="flux1", sha256="0" * 64, key=key)
    store.write_json("styles/old/pinned_lora.json", legacy.model_dump())
    with pytest.raises(StyleError, match="outside the models folder"):
        pin_existing_lora(store, ExistingLora(source="/etc/shadow"), "old", tmp_path / "models", policy())
    assert store.read_json("styles/meadow/pinned_lora.json")["checked"] == PIN_CHECK


def test_a_sha256_pin_that_differs_names_its_field(host, tmp_path):
    lora = ExistingLora(source=host.at("/meadow.safetensors"), sha256="f" * 64)
    with pytest.raises(StyleError, match=r"^styles/meadow/style.yaml: lora.sha256: "):
        pin_existing_lora(LocalArtifactStore(tmp_path / "out"), lora, "meadow", tmp_path, policy())
