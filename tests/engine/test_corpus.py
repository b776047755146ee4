import hashlib
import json

from constellation.engine.corpus import CorpusConfig, build_corpus, write_corpus


def test_it_builds_a_deduplicated_capped_corpus_without_download(corpus):
    total = sum(len(d.encode("utf-8")) for d in corpus)
    assert 200_000 < total <= 300_000
    hashes = {hashlib.sha1(d.encode()).hexdigest() for d in corpus}
    assert len(hashes) == len(corpus)
    assert all(len(d) >= 80 for d in corpus)
    assert any("Return" in d for d in corpus)  # stdlib docstrings are in


def test_it_is_deterministic_and_writes_jsonl(tmp_path):
    cfg = CorpusConfig(max_bytes=50_000)
    assert build_corpus(cfg) == build_corpus(cfg)
    n = write_corpus(tmp_path / "c.jsonl", cfg)
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert n == len(lines) > 0
    assert json.loads(lines[0])["text"] == build_corpus(cfg)[0]
