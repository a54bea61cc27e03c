"""Addresses, as the client and its settings judge them: loopback or not, and shown without credentials."""

from __future__ import annotations

import ipaddress
import urllib.parse


def without_credentials(url: str) -> str:
    """``url`` with any user name and password left out, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
