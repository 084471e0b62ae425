"""Credentials never printed: every URL that reaches a message, a log line or a record is masked here.

    mask_url("rtsp://admin:s3cr3t@cam/live")        -> "rtsp://admin:***@cam/live"
    mask_urls("rtspsrc location=rtsp://a:b@cam ! ...") -> "rtspsrc location=rtsp://a:***@cam ! ..."

urllib.parse finds the user information the way clients do (up to the *last* "@" of the
authority), so a password holding "@" is masked whole.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# A URL inside free text (a GStreamer pipeline, an error message): scheme://, then up to a space or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def mask_url(url: str) -> str:
    """``url`` with its password (or a lone user token) replaced by ***; unchanged without one."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: mask everything between // and the last @
        return re.sub(r"//[^/]*@", f"//{MASK}@", url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if has_password and user else MASK
    return urlunsplit(parts._replace(netloc=f"{shown}@{hostport}"))


def mask_urls(text: str) -> str:
    """Every URL in ``text`` masked as mask_url does."""
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group()), text)


def url_credentials(url: str) -> Tuple[Optional[str], Optional[str]]:
    """(user, password) of ``url``, percent-decoded; (None, None) when it has none."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def strip_credentials(url: str) -> str:
    """``url`` without its user information (what a client connects to)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
