"""`pii` stage: e-mails, IPs and phone numbers are redacted; near-misses are left alone."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curate.filters.pii import Pii

REDACTED = [
    ("Write to jane.doe@example.org for details.", "Write to <EMAIL> for details.", "email"),
    ("Contact: ops-team+alerts@mail.example.co.uk.", "Contact: <EMAIL>.", "email"),
    ("The server at 192.168.10.24 answered.", "The server at <IP_ADDRESS> answered.", "ip"),
    ("Route 10.0.0.0/8 through the gateway.", "Route <IP_ADDRESS>/8 through the gateway.", "ip"),
    ("IPv6 host 2001:db8:85a3::8a2e:370:7334 is up.", "IPv6 host <IP_ADDRESS> is up.", "ip"),
    ("Call +1 415 555 2671 now.", "Call <PHONE> now.", "phone"),
    ("London office: +44 20 7946 0958.", "London office: <PHONE>.", "phone"),
    ("Berlin: +49-30-1234567", "Berlin: <PHONE>", "phone"),
    ("Phone (415) 555-2671 or 415-555-2671 or 415.555.2671.", "Phone <PHONE> or <PHONE> or <PHONE>.", "phone"),
]

LEFT_ALONE = [
    "Python 3.11.2 was released; see section 1.2.3.4.5 of the guide.",
    "The decorator @property and the address user@localhost are not e-mails.",
    "a@b is too short, name@host.c has a one-letter TLD.",
    "256.1.1.1 is not an IPv4 address, nor is 1.2.3.",
    "std::vector<int> and Foo::Bar::baz are C++ scopes; 12:30:45 is a time.",
    "Published 2023-10-05, ISBN 978-3-16-148410-0, pages 100-200.",
    "Order number 4155552671 and extension 555-1234.",
    "It costs +5 dollars, or 3.14159 in pi units.",
]


def run(texts, **params):
    stage = Pii(Pii.Params(**params))
    stage.setup()
    return stage.process(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))


@pytest.mark.parametrize("text, expected, kind", REDACTED)
def test_redacts(text, expected, kind):
    out = run([text])
    assert out.table.column("text")[0].as_py() == expected
    assert out.counters[kind] >= 1
    assert out.drops is None


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_near_misses_stay(text):
    out = run([text])
    assert out.table.column("text")[0].as_py() == text
    assert out.counters == {"email": 0, "ip": 0, "phone": 0, "docs_changed": 0}


def test_counts_per_type_and_custom_tokens():
    texts = [
        "mail a@example.com and b@example.net, server 8.8.8.8, phone +1 202 555 0143",
        "nothing to see here",
        None,
    ]
    out = run(texts, email_token="[E]", ip_token="[IP]", phone_token="[TEL]")
    assert out.table.column("text").to_pylist() == ["mail [E] and [E], server [IP], phone [TEL]", "nothing to see here", None]
    assert out.counters == {"email": 2, "ip": 1, "phone": 1, "docs_changed": 1}


def test_types_param_limits_redaction():
    out = run(["a@example.com 8.8.8.8"], types=["ip"])
    assert out.table.column("text")[0].as_py() == "a@example.com <IP_ADDRESS>"
