"""PII and secrets (aiXcoder step 4): find emails, public IP addresses, keys, tokens and passwords,
and replace each with a placeholder; counts per kind.

    email       regex; addresses at documentation domains (example.com, ...) are left alone
    ip_address  IPv4 regex, kept only when `ipaddress` calls it global (not private, loopback,
                documentation or reserved), so 127.0.0.1 and 192.168.0.1 stay
    key / password   detect-secrets' plugins (AWS, GitHub, Slack, Stripe, JWT, private keys,
                basic-auth URLs, "password = ..." keywords, ...), run only on lines that a cheap
                regex marks as candidates: calling detect-secrets on every line costs ~0.6 ms
                per line (hours on a large corpus), the gate makes it ~1 % of that

Placeholders follow BigCode: <EMAIL>, <IP_ADDRESS>, <KEY>, <PASSWORD>. The high-entropy-string
plugins are off by default: on code they mostly hit hash test vectors and UUIDs.

Example: redact("mail bob@corp.io") -> ("mail <EMAIL>", {"email": 1})
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache

import numpy as np

from lightcoder.data.config import DEFAULT_SECRET_TYPES

PLACEHOLDERS = {"email": "<EMAIL>", "ip_address": "<IP_ADDRESS>", "key": "<KEY>",
                "password": "<PASSWORD>"}
# Both patterns start with a literal or a digit so the regex engine skips most positions fast;
# an email's local part is then extended backwards by hand (EMAIL_LOCAL_CHARS).
EMAIL_DOMAIN_RE = re.compile(r"@((?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24})(?![\w-])")
EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
IPV4_RE = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
DOC_DOMAINS = ("example.com", "example.org", "example.net", "localhost", ".test", ".invalid",
               ".example", "domain.com")
# Lines worth showing to detect-secrets: credential words and key prefixes, found with str.find
# on the lowercased text (one regex with a dozen alternatives costs 5 MB/s on code).
SECRET_WORDS: tuple[str, ...] = (
    "passw", "pwd", "secret", "token", "api_key", "apikey", "api-key", "credential",
    "private key", "akia", "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "sk_live",
    "eyj", "://")
PASSWORD_TYPES = frozenset({"Secret Keyword", "Basic Auth Credentials"})
MIN_SECRET_CHARS = 6  # shorter "secrets" (password = "x") are examples, not credentials


@cache
def _plugins(types: tuple[str, ...]):
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping = get_mapping_from_secret_type_to_class()
    unknown = [t for t in types if t not in mapping]
    if unknown:
        raise ValueError(f"data.pii.secret_types: unknown detect-secrets types {unknown}; "
                         f"known: {sorted(mapping)}")
    return [mapping[t]() for t in types]


def _is_public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-+/=.]{16,}")  # what every key/token plugin needs
WORD_PLUGINS = frozenset({"KeywordDetector", "BasicAuthDetector", "PrivateKeyDetector"})


def find_secrets(line: str, types: tuple[str, ...]) -> list[tuple[str, str]]:
    """(kind, secret value) found by detect-secrets in one line; kind is "key" or "password".

    Key/token plugins only see lines with a 16+ character token-like run (no key is shorter).
    """
    found = []
    has_long = LONG_TOKEN_RE.search(line) is not None
    for plugin in _plugins(types):
        if not has_long and type(plugin).__name__ not in WORD_PLUGINS:
            continue
        for secret in plugin.analyze_line(filename="file", line=line, line_number=0):
            value = secret.secret_value or ""
            if len(value) < MIN_SECRET_CHARS:  # a rule whose group is only the prefix (GitHub's "ghp")
                value = _whole_match(plugin, line, value)
            if len(value) >= MIN_SECRET_CHARS and value in line:
                found.append(("password" if secret.type in PASSWORD_TYPES else "key", value))
    return found


def _whole_match(plugin, line: str, group: str) -> str:
    """The whole text a detect-secrets rule matched where it reports only a short captured group: GitHub's
    and GitLab's rules capture the token's prefix ("ghp", "glpat"), which alone would leave the token.

    Example: for 'token = "ghp_' + 36 characters + '"' -> "ghp_" + the 36 characters
    """
    for rule in getattr(plugin, "denylist", ()):
        for m in rule.finditer(line):
            if group in m.groups():
                return m.group(0)
    return group


def _may_hold_ipv4(text: str) -> bool:
    """False when no three digit-dot-digit spots lie close together: no IPv4 address (numpy
    over the bytes; the regex alone scans every position at ~100 MB/s)."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if b.size < 7:
        return False
    digit = (b >= 48) & (b <= 57)
    spots = np.flatnonzero((b[1:-1] == 46) & digit[:-2] & digit[2:])
    return spots.size >= 3 and bool(np.any(spots[2:] - spots[:-2] <= 8))


def _candidate_lines(text: str) -> list[int]:
    """Indices of lines that contain a SECRET_WORDS entry (case-insensitive)."""
    lowered = text.lower()
    hits = []
    for word in SECRET_WORDS:
        i = lowered.find(word)
        while i >= 0:
            hits.append(i)
            i = lowered.find(word, i + 1)
    return sorted({text.count("\n", 0, h) for h in hits})


def redact(text: str, *, secret_types: tuple[str, ...] = DEFAULT_SECRET_TYPES
           ) -> tuple[str, dict[str, int]]:
    """(text with PII replaced by placeholders, count per kind). Secrets go first, so the
    password in "https://user:pw@host.com" is not mistaken for an email address."""
    counts: dict[str, int] = {}
    if secret_types:
        lines = None
        for i in _candidate_lines(text):
            lines = lines or text.split("\n")  # "\n" only: _candidate_lines counts those (not \x0c, \u2028...)
            line = lines[i] if i < len(lines) else ""
            # Secrets are literals or URLs: a line with no quote and no "://" has none.
            if len(line) > 2000 or not ('"' in line or "'" in line or "://" in line):
                continue
            for kind, value in find_secrets(lines[i], tuple(secret_types)):
                if value in lines[i]:
                    lines[i] = lines[i].replace(value, PLACEHOLDERS[kind])
                    counts[kind] = counts.get(kind, 0) + 1
        if lines is not None:
            text = "\n".join(lines)
    if "@" in text:
        text = _redact_emails(text, counts)
    for m in reversed(list(IPV4_RE.finditer(text)) if _may_hold_ipv4(text) else []):
        s, e = m.span()
        if (s and text[s - 1] == ".") or text[e: e + 1] == "." and text[e + 1: e + 2].isdigit():
            continue  # part of a longer dotted number: a version, an OID
        if _is_public_ip(m.group(0)):
            text = text[:s] + PLACEHOLDERS["ip_address"] + text[e:]
            counts["ip_address"] = counts.get("ip_address", 0) + 1
    return text, counts


def _redact_emails(text: str, counts: dict[str, int]) -> str:
    out, last = [], 0
    for m in EMAIL_DOMAIN_RE.finditer(text):
        at = m.start()
        start = at
        while start > last and at - start < 64 and text[start - 1] in EMAIL_LOCAL_CHARS:
            start -= 1
        if start == at or m.group(1).lower().endswith(DOC_DOMAINS) or _is_code(m.group(1), text[m.end():m.end() + 2]):
            continue
        out += [text[last:start], PLACEHOLDERS["email"]]
        last = m.end()
        counts["email"] = counts.get("email", 0) + 1
    return "".join(out) + text[last:] if out else text


def _is_code(domain: str, after: str) -> bool:
    """An `a@b.c` that is code, not an address: a matrix product or a decorator-like reference goes on with a
    call, an index or another attribute (`q@k.transpose(-2, -1)`, `this@Main.finish()`), or ends in a
    mixed-case name no top-level domain has (`query@key.mT`).

    Example: _is_code("key.mT", " /") -> True; _is_code("corp.io", ">") -> False
    """
    tld = domain.rsplit(".", 1)[-1]
    return after[:1] in ("(", "[") or (after[:1] == "." and after[1:2].isalnum()) or not (tld.islower() or tld.isupper())
