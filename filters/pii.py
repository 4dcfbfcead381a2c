"""``pii``: redact e-mail addresses, IP addresses and phone numbers.

Each match is replaced by a token (``<EMAIL>``, ``<IP_ADDRESS>``, ``<PHONE>`` by default) and
counted per type in the run's counters (``email``, ``ip``, ``phone``, ``docs_changed``). Never
drops rows. Patterns favour precision: what is left alone on purpose is listed per pattern.

- **email**: ``local@domain.tld`` with a dotted domain and an alphabetic TLD of 2+ letters.
  Not: ``user@localhost``, ``@decorator``, ``a@b``, ``name@host.c``, ``x@1.2.3.4``-style IPs
  (the IP part is then redacted as an IP).
- **ip**: IPv4 dotted quads with octets 0-255 (not part of a longer dotted number: ``1.2.3.4.5``
  and version strings like ``3.11.2`` stay); IPv6 (full or ``::``-compressed, validated with
  :mod:`ipaddress`, at least three non-empty groups so ``A::B`` C++ scopes and ``12:30:45``
  times stay).
- **phone**: international numbers starting with ``+`` and a country code (8-15 digits in
  groups), and North-American numbers ``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``,
  ``415 555 2671``. Not: dates (``2023-10-05``), ISBNs (``978-3-16-148410-0``), plain digit
  runs (``4155552671`` could be anything), 7-digit local numbers, number ranges.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from curate.pipelines.stage import Params, Stage, StageOutput
from pydantic import Field

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)(?![\w])")
# candidates; validated with ipaddress
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?<=:):)(?![\w:])")
EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])"
)
PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w-]|\.\d)")
PHONE_NANP = re.compile(r"(?<![\w+.-])(?:\(\d{3}\)[ ]?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-]|\.\d)")

Kind = Literal["email", "ip", "phone"]


class PiiParams(Params):
    types: list[Kind] = Field(["email", "ip", "phone"], description="what to redact")
    email_token: str = Field("<EMAIL>", description="replacement for an e-mail address")
    ip_token: str = Field("<IP_ADDRESS>", description="replacement for an IP address")
    phone_token: str = Field("<PHONE>", description="replacement for a phone number")
    field: str = Field("text", description="column to redact")


def _intl_ok(m: re.Match[str]) -> bool:
    digits = sum(c.isdigit() for c in m.group(0))
    return 8 <= digits <= 15


def _ipv6_ok(candidate: str) -> bool:
    groups = [g for g in candidate.split(":") if g]
    if len(groups) < 3:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


class Pii(Stage[PiiParams]):
    """Redact e-mail addresses, IP addresses and phone numbers; counts replacements per type."""

    name = "pii"
    Params = PiiParams
    batch_size = 8192

    def input_columns(self) -> tuple[str, ...]:
        return (self.params.field,)

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with PII replaced, and the number of replacements per type."""
        p = self.params
        counts = {"email": 0, "ip": 0, "phone": 0}
        if "email" in p.types and "@" in text:
            text, counts["email"] = EMAIL.subn(p.email_token, text)
        if "ip" in p.types:
            if "." in text:
                text, counts["ip"] = IPV4.subn(p.ip_token, text)
            if "::" in text or text.count(":") >= 7:
                n = 0

                def v6(m: re.Match[str]) -> str:
                    nonlocal n
                    if _ipv6_ok(m.group(0)):
                        n += 1
                        return p.ip_token
                    return m.group(0)

                text = IPV6.sub(v6, text)
                counts["ip"] += n
        if "phone" in p.types:
            n = 0

            def intl(m: re.Match[str]) -> str:
                nonlocal n
                if _intl_ok(m):
                    n += 1
                    return p.phone_token
                return m.group(0)

            if "+" in text:
                text = PHONE_INTL.sub(intl, text)
            text, k = PHONE_NANP.subn(p.phone_token, text)
            counts["phone"] = n + k
        return text, counts

    def process(self, batch: pa.Table) -> StageOutput:
        col = batch.column(self.params.field)
        # only documents with a digit or an '@' can hold PII: skip the rest without Python work
        candidates = pc.match_substring_regex(col, r"[@\d:]").to_numpy(zero_copy_only=False)
        values = col.to_pylist()
        totals = {"email": 0, "ip": 0, "phone": 0, "docs_changed": 0}
        for i in candidates.nonzero()[0]:
            text = values[i]
            if text is None:
                continue
            new, counts = self.redact(text)
            if new != text:
                values[i] = new
                totals["docs_changed"] += 1
                for k, v in counts.items():
                    totals[k] += v
        idx = batch.schema.get_field_index(self.params.field)
        out = batch.set_column(idx, self.params.field, pa.array(values, pa.string()))
        return StageOutput(out, counters=totals)
