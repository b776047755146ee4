"""Bootstrap corpus: docstrings and docs of the installed Python packages (docs/design.md §6).

Nothing is downloaded and nothing is imported: source files are parsed with `ast`, so building
the corpus has no side effects. Documents are deduplicated by content hash and capped in total
size, in a deterministic order (stdlib first, then site-packages, paths sorted).
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CorpusConfig:
    max_bytes: int = 4_000_000  # total size cap of the corpus (UTF-8 bytes)
    min_chars: int = 80  # drop docstrings shorter than this
    max_file_bytes: int = 400_000  # skip source/doc files larger than this
    include_docs: bool = True  # also .md/.rst/.txt files and package METADATA
    roots: list[str] = field(default_factory=list)  # default: stdlib + site-packages
    skip_dirs: tuple[str, ...] = ("test", "tests", "__pycache__", "idlelib", "site-packages")


def default_roots() -> list[str]:
    paths = sysconfig.get_paths()
    out: list[str] = []
    for key in ("stdlib", "purelib", "platlib"):
        p = paths.get(key)
        if p and p not in out and Path(p).is_dir():
            out.append(p)
    return out


def _docstrings(source: str) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _files(root: Path, skip: tuple[str, ...], include_docs: bool, top: Path) -> Iterator[Path]:
    suffixes = {".py", ".md", ".rst", ".txt"} if include_docs else {".py"}
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.is_symlink():
            # site-packages sits inside stdlib on some layouts: it is its own root, walk it once
            if path.name in skip and path != top:
                continue
            yield from _files(path, skip, include_docs, top)
        elif path.is_file() and (path.suffix in suffixes or path.name == "METADATA"):
            yield path


def _normalise(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text.strip())


def iter_documents(config: CorpusConfig | None = None) -> Iterator[str]:
    """Yield deduplicated documents until the size cap is reached."""
    cfg = config or CorpusConfig()
    seen: set[str] = set()
    used = 0
    for root in cfg.roots or default_roots():
        top = Path(root)
        for path in _files(top, cfg.skip_dirs, cfg.include_docs, top):
            try:
                if path.stat().st_size > cfg.max_file_bytes:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            docs = _docstrings(text) if path.suffix == ".py" else iter([text])
            for doc in docs:
                doc = _normalise(doc)
                if len(doc) < cfg.min_chars:
                    continue
                key = hashlib.sha1(doc.encode("utf-8")).hexdigest()
                if key in seen:
                    continue
                size = len(doc.encode("utf-8"))
                if used + size > cfg.max_bytes:
                    return
                seen.add(key)
                used += size
                yield doc


def build_corpus(config: CorpusConfig | None = None) -> list[str]:
    """The bootstrap corpus as a list of documents."""
    return list(iter_documents(config))


def write_corpus(path: str | Path, config: CorpusConfig | None = None) -> int:
    """Write the corpus as JSONL {"text": ...}; returns the number of documents."""
    import json

    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for doc in iter_documents(config):
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
            n += 1
    return n
