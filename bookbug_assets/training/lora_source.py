"""Where a style's existing LoRA may come from: a regular file in the models folder, or an https URL of a public
host (a `hf:` source is its Hugging Face resolve URL); and what it must be (lora_file.py), under a size cap.

The bytes are copied into the artifact store and handed to models as weights, so nothing else is read: a path
outside the models folder (or a link out of it), a FIFO or device, a URL of a loopback, private, link-local,
multicast, reserved or cloud-metadata address (also after a redirect), or anything that is not a LoRA is
refused, and a fetch ends within its time limits. Each refusal is a `LoraSourceError` saying why in one line;
the caller names the style and field.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx

from bookbug_assets.providers.lora_refs import hf_resolve_url
from bookbug_assets.training.lora_file import (
    MAX_LORA_BYTES, LoraFileError, SafetensorsHeader, check_lora, header_length, parse_header,
)

# Cloud metadata services, refused by name (most are link-local or private already):
# AWS/GCP/Azure/OpenStack 169.254.169.254 and AWS's IPv6 fd00:ec2::254
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html), the ECS task
# endpoint 169.254.170.2 (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v2.html),
# Alibaba Cloud 100.100.100.200 (https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in
                               ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
# Most specific first: Python counts loopback, 0.0.0.0 and 240.0.0.0/4 as private too.
_ADDRESS_KINDS = (("is_loopback", "loopback"), ("is_unspecified", "unspecified"), ("is_link_local", "link-local"),
                  ("is_multicast", "multicast"), ("is_reserved", "reserved"), ("is_private", "private"))
# Hugging Face repo ids: letters, digits, '-', '_' and '.' (https://huggingface.co/docs/hub/en/repositories).
_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HF_PATH_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class LoraSourceError(ValueError):
    """Why a LoRA source is refused, in one line (the caller prefixes the style and field)."""


def system_resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except (socket.gaierror, UnicodeError) as exc:
        raise LoraSourceError(f"cannot resolve the host {host!r}: {exc}") from None


@dataclass(frozen=True)
class FetchPolicy:
    """How a URL source is fetched. `allow_hosts` are host names whose addresses skip the public-address rule
    (a test's local TLS server, reached through `resolve`); nothing else switches the rule off."""

    allow_hosts: frozenset[str] = frozenset()
    resolve: Callable[[str, int], list[str]] = system_resolve
    verify: ssl.SSLContext | str | bool = True  # True: the certifi bundle httpx ships with
    connect_s: float = 10.0
    read_s: float = 60.0  # longest wait for the next bytes
    deadline_s: float = 600.0  # the whole fetch, redirects and body included
    max_redirects: int = 5
    max_bytes: int = MAX_LORA_BYTES
    headers: dict[str, str] = field(default_factory=lambda: {"User-Agent": "bookbug-lora-fetch"})


def hf_source_url(source: str) -> str:
    """`hf:<owner>/<repo>/<path>.safetensors` as its https resolve URL on the main branch."""
    parts = source[3:].split("/")
    if len(parts) < 3 or not _HF_NAME.match(parts[0]) or not _HF_NAME.match(parts[1]):
        raise LoraSourceError(f"{_shown(source)} is not hf:<owner>/<repo>/<file>.safetensors")
    path = parts[2:]
    if any(p in ("", ".", "..") or not _HF_PATH_PART.match(p) for p in path) or not path[-1].endswith(".safetensors"):
        raise LoraSourceError(f"{_shown(source)}: the file must be a .safetensors path inside the repo")
    return hf_resolve_url(parts[0], parts[1], "/".join(path))


def source_url(source: str) -> str | None:
    """The https URL a remote source is fetched from; None for a local path. http:// and other schemes are refused."""
    if source.startswith("hf:"):
        return hf_source_url(source)
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme == "https":
        return source
    if scheme:
        raise LoraSourceError(f"{_shown(source)}: only https URLs are fetched (or hf:<owner>/<repo>/<file>)")
    return None


def load_lora_source(source: str, family: str, models_dir: Path, policy: FetchPolicy = FetchPolicy()) -> bytes:
    """The LoRA's bytes: fetched for hf:/https sources, read from the models folder otherwise."""
    url = source_url(source)
    if url is None:
        return read_local_lora(source, family, models_dir, policy.max_bytes)
    return fetch_lora(url, family, policy)


def _not_a_lora(source: str, exc: LoraFileError) -> LoraSourceError:
    return LoraSourceError(f"{_shown(source)} is {exc}" if str(exc).startswith("not ") else f"{_shown(source)}: {exc}")


# --- local files ------------------------------------------------------------------------------------------


def read_local_lora(source: str, family: str, models_dir: Path, max_bytes: int = MAX_LORA_BYTES) -> bytes:
    """A regular file inside `models_dir` (also once every link is resolved), checked before it is read whole."""
    root = Path(os.path.abspath(models_dir))
    given = Path(source).expanduser()
    candidate = Path(os.path.normpath(given if given.is_absolute() else root / given))
    if not candidate.is_relative_to(root):
        raise LoraSourceError(f"{source!r} is outside the models folder {str(models_dir)!r} (BOOKBUG_MODELS_DIR)")
    if not root.is_dir():
        raise LoraSourceError(f"{source!r} is a local path, and the models folder {str(models_dir)!r} does not "
                              "exist (BOOKBUG_MODELS_DIR); put the LoRA file there")
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(Path(os.path.realpath(root))):
        raise LoraSourceError(f"{source!r} is a link that leads outside the models folder {str(models_dir)!r}")
    try:
        kind = _file_kind(os.lstat(real).st_mode)
        if kind != "regular":
            raise LoraSourceError(f"{source!r} is a {kind}, not a regular file")
        # O_NOFOLLOW: a link swapped in after the check is not followed; O_NONBLOCK: a FIFO swapped in does
        # not block the open (fstat below refuses it).
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LoraSourceError(f"{source!r}: no such file in the models folder {str(models_dir)!r}") from None
    except OSError as exc:
        raise LoraSourceError(f"{source!r} cannot be opened: {exc.strerror or exc}") from None
    try:
        return _read_open_lora(fd, source, family, max_bytes)
    except LoraFileError as exc:
        raise _not_a_lora(source, exc) from None


def _read_open_lora(fd: int, source: str, family: str, max_bytes: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if _file_kind(info.st_mode) != "regular":
            raise LoraSourceError(f"{source!r} is a {_file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise LoraSourceError(f"{source!r} is {info.st_size} bytes, over the {max_bytes}-byte cap for a LoRA")
        head = f.read(8)
        length = header_length(head)
        if 8 + length > info.st_size:
            raise LoraFileError(f"not a safetensors file: its header length field says {length} bytes and the "
                                f"file has {info.st_size}")
        head += f.read(length)
        header = parse_header(head)
        check_lora(header, family)
        if header.total_bytes != info.st_size:
            raise LoraFileError(f"not a safetensors file: its header describes {header.total_bytes} bytes and "
                                f"the file has {info.st_size}")
        return head + f.read(info.st_size - len(head))


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "regular"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "link")):
        if test(mode):
            return name
    return "special file"


# --- URLs -------------------------------------------------------------------------------------------------


def non_public_reason(address: str) -> str | None:
    """Why a model download must not go to this address (None: a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    for attr, kind in _ADDRESS_KINDS:
        if getattr(ip, attr):
            return kind
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class _Target:
    url: httpx.URL  # the checked address in place of the host name
    host: str  # the name, for the Host header, SNI and certificate check


def _target(url_text: str, policy: FetchPolicy) -> _Target:
    try:
        url = httpx.URL(url_text)
    except (httpx.InvalidURL, ValueError):
        raise LoraSourceError(f"{_shown(url_text)} is not a valid URL") from None
    if url.scheme != "https":
        raise LoraSourceError(f"{_shown(url_text)}: only https URLs are fetched")
    if url.userinfo:
        raise LoraSourceError(f"{_shown(url_text)}: a URL with a user name or password is not fetched")
    host = url.raw_host.decode("ascii").lower().strip("[]")
    if not host:
        raise LoraSourceError(f"{_shown(url_text)} has no host")
    port = url.port or 443
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = list(policy.resolve(host, port))
    if not addresses:
        raise LoraSourceError(f"cannot resolve the host {host!r}")
    if host not in policy.allow_hosts:
        for address in addresses:
            reason = non_public_reason(address)
            if reason:
                shown = host if host == address else f"{host} resolves to {address}, which"
                raise LoraSourceError(f"{_shown(url_text)}: {shown} is a {reason} address; LoRAs are fetched "
                                      "only from public hosts")
    # Connect to the address just checked, so a second DNS answer cannot send the request elsewhere.
    return _Target(url=url.copy_with(host=addresses[0]), host=host)


def fetch_lora(url: str, family: str, policy: FetchPolicy = FetchPolicy()) -> bytes:
    """GET an https URL of a public host, following at most `max_redirects` redirects (each checked the same way),
    within the connect/read limits and the overall deadline, reading at most `max_bytes` of a valid LoRA."""
    deadline = time.monotonic() + policy.deadline_s
    timeout = httpx.Timeout(connect=policy.connect_s, read=policy.read_s, write=policy.read_s,
                            pool=policy.connect_s)
    current = url
    try:
        with httpx.Client(verify=policy.verify, timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(policy.max_redirects + 1):
                target = _target(current, policy)
                port = f":{target.url.port}" if target.url.port not in (None, 443) else ""
                host_header = (f"[{target.host}]" if ":" in target.host else target.host) + port
                headers = {**policy.headers, "Host": host_header, "Accept-Encoding": "identity"}
                with client.stream("GET", target.url, headers=headers,
                                   extensions={"sni_hostname": target.host}) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise LoraSourceError(f"{_shown(current)} redirects without a Location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise LoraSourceError(f"{_shown(current)} answered HTTP {response.status_code}")
                    return _read_body(response, family, policy, deadline, current)
            raise LoraSourceError(f"{_shown(url)} redirects more than {policy.max_redirects} times")
    except LoraFileError as exc:
        raise _not_a_lora(current, exc) from None
    except httpx.HTTPError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise LoraSourceError(f"could not fetch {_shown(current)}: {type(exc).__name__}"
                              f"{': ' + detail if detail else ''}") from None


def _read_body(response: httpx.Response, family: str, policy: FetchPolicy, deadline: float, url: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise LoraSourceError(f"{_shown(url)} is {declared} bytes, over the {policy.max_bytes}-byte cap for a LoRA")
    body = bytearray()
    header: SafetensorsHeader | None = None
    for chunk in response.iter_bytes():  # as the bytes arrive: a chunk size would wait to fill it
        body += chunk
        if time.monotonic() > deadline:
            raise LoraSourceError(f"{_shown(url)} took longer than {policy.deadline_s:g} s to download")
        if len(body) > policy.max_bytes:
            raise LoraSourceError(f"{_shown(url)} is over the {policy.max_bytes}-byte cap for a LoRA")
        if header is None and len(body) >= 8 and len(body) >= 8 + header_length(body):
            header = parse_header(body)
            check_lora(header, family)
            if header.total_bytes > policy.max_bytes:
                raise LoraSourceError(f"{_shown(url)} describes {header.total_bytes} bytes, over the "
                                      f"{policy.max_bytes}-byte cap for a LoRA")
        if header is not None and len(body) > header.total_bytes:
            raise LoraFileError(f"not a safetensors file: it goes on past the {header.total_bytes} bytes its "
                                "header describes")
    if header is None:
        header_length(body)  # names the reason when even the length field is missing or wrong
        raise LoraFileError("not a safetensors file: it ends inside its header")
    if len(body) != header.total_bytes:
        raise LoraFileError(f"not a safetensors file: it ends after {len(body)} of the {header.total_bytes} "
                            "bytes its header describes")
    return bytes(body)


def _shown(source: str) -> str:
    """A source for a message: no query string or credentials (signed URLs carry tokens), printable, short."""
    text = source
    if "://" in source:
        try:
            parts = urlsplit(source)
            netloc = parts.netloc.rpartition("@")[2]  # without user:password
            text = f"{parts.scheme}://{netloc}{parts.path}" + ("?..." if parts.query else "")
        except ValueError:
            text = source.split("?", 1)[0]
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:197] + "..."
