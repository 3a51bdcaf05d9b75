"""An email's bytes written directly, for the rows every email we send is made of.

Building a message with the stdlib `email` package and flattening it was half of the sender's
busy time after the header shortcuts in sender.py (py-spy, bench/sender_bench.py: build 34%,
flatten 16%, 1.3 ms of CPU per email on the 2-core EPYC). Our emails have one shape: a handful
of headers we fill, a text and an HTML part, sometimes a PDF. `wire()` writes that shape as
bytes, and returns None for any row outside what it handles (an address other than a plain
`local@domain`, a header value with anything but plain characters, text that is not valid
UTF-8); the sender then builds that row with the stdlib (build_message), which also decides
whether it can be sent at all. So a row the stdlib refuses is never written
here (tests/unit/test_mime.py: for any row, either None, or a message the stdlib's own parser
reads as the same headers, texts and attachment as the message build_message makes).

The bytes follow what the stdlib writes for these rows: 7bit parts when ASCII, 8bit when not,
quoted-printable when a line is over 998 bytes, a base64 PDF in 76-character lines. One
difference: a Subject that is not plain ASCII words goes as RFC 2047 encoded-words of at most 39
UTF-8 bytes each, folded onto lines of their own of at most 76 characters, as RFC 2047 asks. A
decoder joins adjacent encoded-words without the space between them, so every space travels
inside a word (the stdlib's own folder lost spaces there).
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
from datetime import datetime
from email.headerregistry import Address
from email.utils import format_datetime
from typing import Any

#: a plain address the stdlib's parser reads as exactly itself: dot-atoms of RFC 5322 atext on
#: both sides (without "=" and "?", which could start an encoded-word), an ASCII host name
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z")
#: header values we write as given (ids, kinds, language tags, file names): dot-separated words,
#: so a notification id is also a valid Message-ID left part
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}(?:\.[A-Za-z0-9_-]{1,100}){0,5}\Z")
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*\Z")   # printable ASCII words, single spaces between
_MAX_LINE = 998          # bytes per line, CRLF not counted (RFC 5322)
# UTF-8 bytes per encoded-word: 52 base64 characters, 64 with "=?utf-8?b?" and "?=", so even the
# first line ("Subject: " and a word) keeps within RFC 2047's 76 characters per line
_WORD_BYTES = 39
_CRLF = b"\r\n"


def plain_header(name: str, value: str) -> bool:
    """A header value that goes as given, `Name: value`, and reads back as itself (here and in
    sender.py's headers for the stdlib): no encoded-word lookalike (a reader would decode it), and
    the whole header one line well under the 998-character limit."""
    return (isinstance(value, str) and len(name) + len(value) < 900 and "=?" not in value
            and _PLAIN_VALUE.match(value) is not None)


def message_id(notification_id: str, sender: str) -> str:
    """The same for every attempt: a receiver can drop the copy a crash may have resent."""
    domain = sender.rpartition("@")[2] or "salesbus.example"
    return f"<{notification_id}@{domain}>"


@functools.lru_cache(maxsize=16)
def from_value(sender: str) -> str | None:
    """The From value (and envelope sender) as the stdlib writes it for a plain sender address,
    None when not plain (parsed once per sender)."""
    if not PLAIN_ADDRESS.match(sender):
        return None
    username, _, domain = sender.rpartition("@")
    return str(Address(username=username, domain=domain))


def _subject(subject: str) -> bytes | None:
    if plain_header("Subject", subject):
        return subject.encode("ascii")
    if not subject.isprintable():   # line breaks, tabs, control and format characters: the stdlib's call
        return None
    try:
        data = subject.encode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate
        return None
    words, start = [], 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:   # never split a character
            end -= 1
        words.append(b"=?utf-8?b?" + base64.b64encode(data[start:end]) + b"?=")
        start = end
    return b"\r\n ".join(words)


def _text_part(text: str, subtype: str) -> bytes | None:
    """A text part as the stdlib's set_content writes it (it picks base64 over quoted-printable
    when shorter: the same text for a reader)."""
    try:
        lines = text.encode("utf-8").splitlines()   # bytes: only \r, \n and \r\n end a line, as in the stdlib
    except UnicodeEncodeError:
        return None
    if any(len(line) > _MAX_LINE for line in lines):
        # quoted-printable, as the stdlib does (the HTML table of a confirmation is one 1.2 kB line);
        # binascii's encoder is C. Lines joined by LF and made CRLF after: no LF is left inside a line.
        body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True).replace(b"\n", _CRLF)
        cte = b"quoted-printable"
    else:
        body = _CRLF.join(lines) + _CRLF
        cte = b"7bit" if body.isascii() else b"8bit"
    return (b'Content-Type: text/' + subtype.encode() + b'; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


def boundary() -> str:
    """A multipart boundary: 128 random bits cannot be guessed into a body, so no part needs
    checking against it (the stdlib generator's own check compiled a regex per email)."""
    return f"=_salesbus_{secrets.token_hex(16)}"


def _multipart(subtype: bytes, parts: list[bytes], boundary: bytes) -> bytes:
    out = []
    for part in parts:
        out += [b"--", boundary, _CRLF, part, _CRLF]
    out += [b"--", boundary, b"--", _CRLF]
    return b"".join(out)


def _pdf_part(data: bytes, name: str) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", _CRLF)   # 76-character lines
    return (b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n' + encoded)


def wire(row: dict[str, Any], *, sender: str, date: datetime) -> bytes | None:
    """The row's email as it goes to the relay, or None when the row is not of the plain kinds
    written here (the caller builds it with the stdlib, which may refuse it)."""
    from_header = from_value(sender)
    recipient, nid = row["recipient"], row["notification_id"]
    if (from_header is None or not isinstance(recipient, str) or not PLAIN_ADDRESS.match(recipient)
            or not all(isinstance(row[k], str) and _TOKEN.match(row[k])
                       for k in ("notification_id", "kind", "language"))
            or not isinstance(row["subject"], str) or not isinstance(row["body_text"], str)
            or not isinstance(row["body_html"], str)):
        return None
    subject = _subject(row["subject"])
    text, html = _text_part(row["body_text"], "plain"), _text_part(row["body_html"], "html")
    if subject is None or text is None or html is None:
        return None
    body = _multipart(b"alternative", [text, html], alt := boundary().encode())
    content_type = b'multipart/alternative; boundary="' + alt + b'"'
    if row.get("attachment") is not None:
        name = row.get("attachment_name") or "document.pdf"
        if not _TOKEN.match(name):
            return None
        inner = b'Content-Type: ' + content_type + b"\r\n\r\n" + body
        body = _multipart(b"mixed", [inner, _pdf_part(bytes(row["attachment"]), name)], mixed := boundary().encode())
        content_type = b'multipart/mixed; boundary="' + mixed + b'"'
    head = (f"From: {from_header}\r\nTo: {recipient}\r\n").encode() + b"Subject: " + subject + (
        f"\r\nDate: {format_datetime(date)}\r\nMessage-ID: {message_id(nid, sender)}\r\n"
        f"Auto-Submitted: auto-generated\r\nX-Salesbus-Kind: {row['kind']}\r\n"
        f"X-Salesbus-Language: {row['language']}\r\nX-Salesbus-Notification-Id: {nid}\r\n"
        f"MIME-Version: 1.0\r\n").encode() + b"Content-Type: " + content_type + (
        f"\r\nContent-Language: {row['language']}\r\n\r\n").encode()
    return head + body
