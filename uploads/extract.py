"""Text extraction per file type (docs/uploads.md). Pure Python: no Django, no database.

`extract(path, name)` detects the type from the extension and the content, and returns the
file's training records plus its plain text; a file that cannot be used raises `ExtractError`
whose message says what is wrong (and where: a JSONL line, a CSV line, a PDF page).

Records are what training reads (docs/design.md §6): {"text"}, {"prompt", "completion"} or
{"messages": [{"role", "content"}, ...]}. The plain text (records joined by blank lines) is what
is chunked, embedded as basins and previewed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

SUPPORTED = ("txt", "md", "html", "pdf", "jsonl", "csv")
EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
SNIFF_BYTES = 8192
RECORD_SEPARATOR = "\n\n"

Record = dict[str, Any]


class ExtractError(ValueError):
    """The file cannot be used; the message says why (and where)."""


@dataclass
class Extracted:
    file_type: str
    records: list[Record]
    text: str  # the records' text, joined by blank lines


def supported_list() -> str:
    return ", ".join(SUPPORTED)


def record_text(record: Record) -> str:
    """The plain text of one record (what is chunked): prompt and completion, or the dialogue."""
    if "text" in record:
        return str(record["text"])
    if "messages" in record:
        return "\n".join(f"{m['role']}: {m['content']}" for m in record["messages"])
    return f"{record['prompt']}\n{record['completion']}"


def detect_type(name: str, head: bytes) -> str:
    """The file type from its extension, checked against (or, without one, taken from) its
    first bytes."""
    suffix = Path(name).suffix.lower()
    is_pdf = head.startswith(b"%PDF-")
    if suffix in EXTENSIONS:
        kind = EXTENSIONS[suffix]
        if kind == "pdf" and not is_pdf:
            raise ExtractError("not a PDF: the file does not start with %PDF-")
        return "pdf" if is_pdf else kind
    if is_pdf:
        return "pdf"
    if suffix:
        raise ExtractError(
            f"unsupported file type {suffix!r}: supported types are {supported_list()}"
        )
    if b"\x00" in head:
        raise ExtractError(
            f"unsupported file type: binary content without an extension; supported types "
            f"are {supported_list()}"
        )
    start = head.lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    first = start.split(b"\n", 1)[0]
    if first.startswith(b"{"):
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except ValueError:
            pass
    return "txt"


def decode_utf8(data: bytes, what: str = "the file") -> str:
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ExtractError(f"{what} holds binary data (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ExtractError(
            f"{what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}) cannot be decoded; save it as UTF-8"
        ) from None


def _need_text(text: str, what: str) -> str:
    if not text or text.isspace():  # (no stripped copy of a large text)
        raise ExtractError(f"no text: {what}")
    return text


# ---- per type ---------------------------------------------------------------------------------
def extract_plain(data: bytes) -> str:
    return _need_text(decode_utf8(data), "the file is empty or only whitespace")


class _HTMLText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    BLOCK = frozenset(
        {
            *("p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article"),
            *("h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "title"),
            *("header", "footer", "nav", "main", "aside", "dd", "dt", "figcaption"),
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []
        self.in_pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping.append(tag)
        if tag == "pre":
            self.in_pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.skipping:
            while self.skipping and self.skipping.pop() != tag:
                pass
        if tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.parts.append(data if self.in_pre else re.sub(r"[ \t\r\f\v\n]+", " ", data))


def extract_html(data: bytes) -> str:
    parser = _HTMLText()
    parser.feed(decode_utf8(data))
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return _need_text(text, "the HTML has no visible text (scripts and styles are dropped)")


@dataclass(frozen=True)
class PdfLimits:
    """What one PDF may cost (settings QIG_UPLOAD_PDF_MAX_PAGES, QIG_UPLOAD_MAX_CHARS,
    QIG_UPLOAD_PDF_MAX_S). A few KB can describe a page tree of 10^5 pages (a page referenced
    many times) that takes a minute to extract: such a PDF is refused, saying which limit."""

    max_pages: int = 2000
    max_chars: int = 5_000_000
    max_seconds: float = 30.0


def extract_pdf(path: Path, limits: PdfLimits = PdfLimits()) -> str:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError

    # pypdf's own walk of the page tree stops past this many entries, so a page tree that
    # claims millions of pages costs no more than a few times the page limit to refuse.
    with apply_configuration(page_tree_maximum_entries=2 * limits.max_pages + 64):
        try:
            reader = PdfReader(str(path))
            _open(reader)
            pages = len(reader.pages)
        except LimitReachedError:
            pages = limits.max_pages + 1
        except ExtractError:
            raise
        except (PdfReadError, ValueError, OSError, RecursionError) as exc:
            raise ExtractError(f"not a readable PDF: {exc}") from None
        if pages > limits.max_pages:
            raise ExtractError(
                f"the PDF has more than {limits.max_pages} pages, the limit "
                "(QIG_UPLOAD_PDF_MAX_PAGES): split it into smaller files"
            )
        return _pdf_text(reader, pages, limits)


def _open(reader: Any) -> None:
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")  # a PDF with only an owner password opens with ""
    except Exception as exc:  # pypdf raises several types (e.g. a missing AES backend)
        raise ExtractError(f"encrypted PDF: it cannot be opened ({exc})") from None
    if not opened:
        raise ExtractError("encrypted PDF: it needs a password to open; upload an unencrypted copy")


def _pdf_text(reader: Any, pages: int, limits: PdfLimits) -> str:
    deadline, chars, texts = time.monotonic() + limits.max_seconds, 0, []
    for number, page in enumerate(reader.pages, 1):
        try:
            texts.append((page.extract_text() or "").strip())
        except Exception as exc:  # a damaged page: say which
            raise ExtractError(f"PDF page {number}: its text cannot be extracted ({exc})") from None
        chars += len(texts[-1])
        if chars > limits.max_chars:
            raise ExtractError(
                f"the PDF's text passes {limits.max_chars:,} characters by page {number}, the "
                "limit (QIG_UPLOAD_MAX_CHARS): split it into smaller files"
            )
        if time.monotonic() > deadline and number < pages:
            raise ExtractError(
                f"the PDF's text took more than {limits.max_seconds:g} s to extract (page "
                f"{number} of {pages}), the limit (QIG_UPLOAD_PDF_MAX_S): split it or simplify it"
            )
    text = RECORD_SEPARATOR.join(t for t in texts if t)
    return _need_text(
        text,
        f"the PDF's {pages} page(s) hold no extractable text (scanned pages would need "
        "OCR, which is not supported)",
    )


def _jsonl_record(value: Any, line: int) -> Record:
    where = f"line {line}"
    if not isinstance(value, dict):
        raise ExtractError(f"{where}: expected a JSON object, got {type(value).__name__}")
    if "text" in value:
        if not isinstance(value["text"], str):
            raise ExtractError(f'{where}: "text" must be a string')
        return {"text": value["text"]}
    if "prompt" in value or "completion" in value:
        for key in ("prompt", "completion"):
            if not isinstance(value.get(key), str):
                raise ExtractError(f'{where}: "prompt" and "completion" must both be strings')
        return {"prompt": value["prompt"], "completion": value["completion"]}
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise ExtractError(f'{where}: "messages" must be a non-empty list')
        clean = []
        for i, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)
            ):
                raise ExtractError(
                    f'{where}: messages[{i}] needs string "role" and "content" fields'
                )
            clean.append({"role": message["role"], "content": message["content"]})
        return {"messages": clean}
    raise ExtractError(
        f'{where}: expected an object with "text", "prompt"+"completion" or "messages"; '
        f"got keys {', '.join(sorted(value)) or '(none)'}"
    )


def extract_jsonl(data: bytes) -> list[Record]:
    records = []
    for number, line in enumerate(decode_utf8(data).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExtractError(
                f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:  # 4,300+ digits; nesting past the stack
            message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ExtractError(f"line {number}: invalid JSON ({message})") from None
        records.append(_jsonl_record(value, number))
    if not records:
        raise ExtractError("no text: the JSONL file has no records")
    if not any(record_text(r).strip() for r in records):
        raise ExtractError("no text: every JSONL record is empty")
    return records


def extract_csv(data: bytes, text_column: str | None) -> list[Record]:
    text = decode_utf8(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:SNIFF_BYTES], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(1 << 30)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise ExtractError("no text: the CSV file is empty") from None
    except csv.Error as exc:
        raise ExtractError(f"CSV line 1: {exc}") from None
    columns = [c.strip() for c in header]
    available = ", ".join(repr(c) for c in columns)
    if text_column:
        if text_column not in columns:
            raise ExtractError(f"CSV has no column {text_column!r}; its columns are {available}")
        position = columns.index(text_column)
    else:
        lowered = [c.lower() for c in columns]
        if "text" not in lowered:
            raise ExtractError(
                f"CSV has no column named 'text': choose the text column (text_column); its "
                f"columns are {available}"
            )
        position = lowered.index("text")
    records = []
    try:
        for row in reader:
            if position < len(row) and row[position].strip():
                records.append({"text": row[position]})
    except csv.Error as exc:
        raise ExtractError(f"CSV line {reader.line_num}: {exc}") from None
    if not records:
        raise ExtractError(f"no text: the CSV column {columns[position]!r} is empty in every row")
    return records


def extract(
    path: Path, name: str, text_column: str | None = None, pdf_limits: PdfLimits = PdfLimits()
) -> Extracted:
    """Extract a stored upload. Raises ExtractError with a message for the user."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    kind = detect_type(name, head)
    if kind == "pdf":
        records: list[Record] = [{"text": extract_pdf(path, pdf_limits)}]
    else:
        data = path.read_bytes()
        if kind in ("txt", "md"):
            records = [{"text": extract_plain(data)}]
        elif kind == "html":
            records = [{"text": extract_html(data)}]
        elif kind == "jsonl":
            records = extract_jsonl(data)
        else:
            records = extract_csv(data, text_column)
    text = RECORD_SEPARATOR.join(record_text(r) for r in records)
    return Extracted(kind, records, text)
