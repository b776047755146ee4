"""`federation.anonymise` on a corpus of realistic strings: every personal or secret value is gone,
the words around it are kept, and ordinary text comes back unchanged."""

from __future__ import annotations

import pytest

from federation.anonymise import anonymise

NAMES = ["alice", "Bob", "Smith", "mwright", "Zoë"]

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq8v0Yx2k\nq9J3xR1mZ0pQ8wLk4TnB6a\n"
    "-----END RSA PRIVATE KEY-----"
)

# (text, values that must be gone, words that must be kept, placeholder expected)
CORPUS: list[tuple[str, list[str], list[str], str]] = [
    (
        "Write to john.doe@example.com for access.",
        ["john.doe@example.com"],
        ["Write to", "for access."],
        "<email>",
    ),
    (
        "cc: Maria.Garcia+billing@mail.co.uk and the team",
        ["Maria.Garcia+billing@mail.co.uk"],
        ["cc:", "and the team"],
        "<email>",
    ),
    (
        "<admin@corp-intranet.io> said the build is green",
        ["admin@corp-intranet.io"],
        ["said the build is green"],
        "<email>",
    ),
    (
        "The server at 192.168.1.42 refused the connection",
        ["192.168.1.42"],
        ["The server at", "refused the connection"],
        "<ip>",
    ),
    (
        "curl http://10.0.0.7:8080/health returned 503",
        ["10.0.0.7"],
        ["curl http://", ":8080/health returned 503"],
        "<ip>",
    ),
    ("ssh root@203.0.113.9 -p 2222", ["203.0.113.9"], ["ssh", "-p 2222"], "<ip>"),
    (
        "The loopback ::1 answers but fe80::1ff:fe23:4567:890a%eth0 does not",
        ["::1 ", "fe80::1ff:fe23:4567:890a"],
        ["The loopback", "answers but", "does not"],
        "<ip>",
    ),
    (
        "Ping 2001:db8:85a3::8a2e:370:7334, then retry",
        ["2001:db8:85a3::8a2e:370:7334"],
        ["Ping", ", then retry"],
        "<ip>",
    ),
    (
        "Mapped address ::ffff:198.51.100.23 in the log",
        ["198.51.100.23", "::ffff"],
        ["Mapped address", "in the log"],
        "<ip>",
    ),
    (
        "git clone https://alice:S3cr3tPass@github.com/org/repo.git fails",
        ["S3cr3tPass", "alice:"],
        ["git clone https://", "@github.com/org/repo.git fails"],
        "<credentials>",
    ),
    (
        "DATABASE_URL=postgres://qig:hunter2@db.internal:5432/qig is set",
        ["hunter2", "qig:hunter2"],
        ["DATABASE_URL=postgres://", "@db.internal:5432/qig is set"],
        "<credentials>",
    ),
    (
        "use redis://:Pa55word@cache:6379/0 for the broker",
        ["Pa55word"],
        ["use redis://", "@cache:6379/0 for the broker"],
        "<credentials>",
    ),
    (
        "ftp://deploy@files.example.org/pub is the mirror",
        ["deploy@"],
        ["ftp://", "@files.example.org/pub is the mirror"],
        "<credentials>",
    ),
    (
        "My key is sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW, keep it safe",
        ["sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW"],
        ["My key is", ", keep it safe"],
        "<secret>",
    ),
    (
        "OPENAI_API_KEY sk-4f9aB2cD8eF1gH7iJ3kL5mN0oP6qR in the env",
        ["sk-4f9aB2cD8eF1gH7iJ3kL5mN0oP6qR"],
        ["OPENAI_API_KEY", "in the env"],
        "<secret>",
    ),
    (
        "push with ghp_16C7e42F292c6912E7710c838347Ae178B4a then",
        ["ghp_16C7e42F292c6912E7710c838347Ae178B4a"],
        ["push with", "then"],
        "<secret>",
    ),
    (
        "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz works",
        ["github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"],
        ["works"],
        "<secret>",
    ),
    (
        "the action uses gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 now",
        ["gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"],
        ["the action uses", "now"],
        "<secret>",
    ),
    (
        "Slack bot xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp posts",
        ["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp"],
        ["Slack bot", "posts"],
        "<secret>",
    ),
    (
        "user token xoxp-2345-6789-abcdef0123 expired",
        ["xoxp-2345-6789-abcdef0123"],
        ["user token", "expired"],
        "<secret>",
    ),
    (
        "AWS key AKIAIOSFODNN7EXAMPLE belongs to ci",
        ["AKIAIOSFODNN7EXAMPLE"],
        ["AWS key", "belongs to ci"],
        "<secret>",
    ),
    (
        "temporary ASIAY34FZKBOKMUTVV7A session",
        ["ASIAY34FZKBOKMUTVV7A"],
        ["temporary", "session"],
        "<secret>",
    ),
    (
        f"aws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1",
        [AWS_SECRET, "EXAMPLEKEY"],
        ["aws_secret_access_key = ", "region = eu-west-1"],
        "<secret>",
    ),
    (
        "maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY loads tiles",
        ["AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"],
        ["maps key", "loads tiles"],
        "<secret>",
    ),
    (
        "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc today",
        ["sk_live_4eC39HqLyjWDarjtT1zdp7dc"],
        ["charge with", "today"],
        "<secret>",
    ),
    (
        "restricted rk_live_51Habc123DEF456ghi and pk_live_51Hxyz789UVW012rst",
        ["rk_live_51Habc123DEF456ghi", "pk_live_51Hxyz789UVW012rst"],
        ["restricted", "and"],
        "<secret>",
    ),
    (
        f"the cookie holds {JWT} until logout",
        [JWT, "eyJhbGci"],
        ["the cookie holds", "until logout"],
        "<secret>",
    ),
    (
        "curl -H 'Authorization: Bearer abc123.def456-ghi789' https://api.example.com",
        ["abc123.def456-ghi789"],
        ["curl -H 'Authorization: Bearer", "https://api.example.com"],
        "<secret>",
    ),
    (
        "send Authorization: Basic dXNlcjpwYXNzd29yZA== to the proxy",
        ["dXNlcjpwYXNzd29yZA=="],
        ["send Authorization: Basic", "to the proxy"],
        "<secret>",
    ),
    (
        "call it with bearer 9f8e7d6c5b4a3f2e1d0c please",
        ["9f8e7d6c5b4a3f2e1d0c"],
        ["call it with bearer", "please"],
        "<secret>",
    ),
    (
        "export QIG_API_KEY=qig_Zx81kP0qLm4vT7rB2nWc9d",
        ["qig_Zx81kP0qLm4vT7rB2nWc9d"],
        ["export QIG_API_KEY="],
        "<secret>",
    ),
    (
        "qig federation join http://central:9200 qigjoin_kV3xQ9pL2mN8rT5wY1zA7bC4dF6gH0jK2lM4nP",
        ["qigjoin_kV3xQ9pL2mN8rT5wY1zA7bC4dF6gH0jK2lM4nP"],
        ["qig federation join http://central:9200"],
        "<secret>",
    ),
    (
        "login failed: password=hunter2 for the admin",
        ["hunter2"],
        ["login failed: password=", "for the admin"],
        "<secret>",
    ),
    (
        "config passwd: correcthorse42 is old",
        ["correcthorse42"],
        ["config passwd:", "is old"],
        "<secret>",
    ),
    (
        '{"api_key": "abcd-1234-efgh", "model": "qig"}',
        ["abcd-1234-efgh"],
        ['{"api_key": "', '", "model": "qig"}'],
        "<secret>",
    ),
    (
        "set DB_PASSWORD='my pass phrase' in .env",
        ["my pass phrase"],
        ["set DB_PASSWORD='", "' in .env"],
        "<secret>",
    ),
    (
        "the header token: tk-88f1a2 goes first",
        ["tk-88f1a2"],
        ["the header token:", "goes first"],
        "<secret>",
    ),
    (
        "client_secret=Q2xpZW50U2VjcmV0 and secret=xyz987 both leaked",
        ["Q2xpZW50U2VjcmV0", "xyz987"],
        ["client_secret=", "and secret=", "both leaked"],
        "<secret>",
    ),
    (
        f"key file:\n{PEM}\nend of file",
        ["MIIEowIBAAKCAQEA7bq8v0Yx2k", "BEGIN RSA PRIVATE"],
        ["key file:", "end of file"],
        "<secret>",
    ),
    (
        "session 8c1f0e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e expired",
        ["8c1f0e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e"],
        ["session", "expired"],
        "<secret>",
    ),
    (
        "random x9Fk2LmQ8pR4tZ7vB1nC6hJ3wY5sD0gAe7 was issued",
        ["x9Fk2LmQ8pR4tZ7vB1nC6hJ3wY5sD0gAe7"],
        ["random", "was issued"],
        "<secret>",
    ),
    ("Thanks Alice, that fixed it", ["Alice"], ["Thanks", ", that fixed it"], "<user>"),
    ("bob and BOB both asked", ["bob", "BOB"], ["and", "both asked"], "<user>"),
    ("Ms. Smith wants the report", ["Smith"], ["Ms.", "wants the report"], "<user>"),
    ("home dir /home/mwright/projects", ["mwright"], ["home dir /home/", "/projects"], "<user>"),
    ("Zoë asked about deques", ["Zoë"], ["asked about deques"], "<user>"),
    (
        "ping @dev_ops-lead about the deploy",
        ["@dev_ops-lead", "dev_ops"],
        ["ping", "about the deploy"],
        "<user>",
    ),
    ("(@kim) approved it", ["@kim", "kim"], ["(", ") approved it"], "<user>"),
]

ORDINARY = [
    "Python 3.11.4 was released on 2023-06-06 at 14:30 UTC.",
    "Version 1.2.3 fixes the crash in the parser.",
    "A deque is a double-ended queue with O(1) appends at both ends.",
    "Meet me at 10:45 on Tuesday, 12 March 2024.",
    "The kernel has 240 roots and 64 dimensions.",
    "Use list.append(x) to add an item; lists don't have push().",
    "The ratio was 3:2, and the score 7-5.",
    "Set max_tokens=512 and temperature=0.7 for shorter answers.",
    "The tokenizer splits words into subword units.",
    "Call the property's getter like an attribute; the decorator sits on its own line.",
    "@property\ndef name(self) -> str:\n    return self._name",
    "snake_case_identifier_with_version_2 is a fine name.",
    "See https://docs.python.org/3/library/collections.html for details.",
    "The function returns None when the list is empty.",
    "Order 66 shipped 12 items for $45.90 to Berlin.",
    "A SHA-1 is 40 hex digits; a UUID has 5 groups.",
    "Stop words are removed before indexing.",
    "Email is the preferred contact; the IP stack is TCP/IP.",
]


@pytest.mark.parametrize(("text", "gone", "kept", "placeholder"), CORPUS)
def test_each_value_is_removed_and_its_context_kept(
    text: str, gone: list[str], kept: list[str], placeholder: str
) -> None:
    out = anonymise(text, NAMES)
    for value in gone:
        assert value not in out, (value, out)
    for words in kept:
        assert words in out, (words, out)
    assert placeholder in out


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40 and len(ORDINARY) >= 15


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_comes_back_unchanged(text: str) -> None:
    assert anonymise(text, NAMES) == text


@pytest.mark.parametrize("text", [c[0] for c in CORPUS] + ORDINARY)
def test_it_is_idempotent_and_deterministic(text: str) -> None:
    once = anonymise(text, NAMES)
    assert anonymise(once, NAMES) == once
    assert anonymise(text, list(reversed(NAMES))) == once


def test_names_that_read_like_placeholders_do_not_nest() -> None:
    names = ["user", "secret", "email", "ip"]
    once = anonymise("the user mailed a@b.io from 1.2.3.4: secret", names)
    assert once == "the <user> mailed <email> from <ip>: <user>"
    assert anonymise(once, names) == once


def test_short_and_blank_names_are_ignored() -> None:
    assert anonymise("a cat sat", ["a", " ", ""]) == "a cat sat"


def test_a_name_inside_a_longer_word_is_kept() -> None:
    assert anonymise("Bobby tables and bob", ["bob"]) == "Bobby tables and <user>"
