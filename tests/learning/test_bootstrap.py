"""`qig init` on a fresh data dir: the 240 kernels exist and the bootstrap jobs are queued."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def _init(data_dir: Path, **env: str) -> sqlite3.Connection:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(QIG_DATA_DIR=str(data_dir), QIG_ADMIN_PASSWORD="bootstrap-test", **env)
    qig = Path(sys.executable).parent / "qig"
    done = subprocess.run(
        [str(qig), "init"], env=environ, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return sqlite3.connect(data_dir / "qig.sqlite3")


def test_it_queues_the_bootstrap_jobs_on_a_fresh_data_dir(tmp_path: Path) -> None:
    db = _init(tmp_path, QIG_BOOTSTRAP_STEPS="300")
    assert db.execute("select count(*) from constellation_kernel").fetchone() == (240,)
    jobs = db.execute(
        "select id, kind, status, after_id, hyperparameters from learning_finetunejob order by id"
    ).fetchall()
    (coordizer_id, kind, status, after, _), (_, kind2, status2, after2, params) = jobs
    assert (kind, status, after) == ("coordizer", "queued", None)
    assert (kind2, status2, after2) == ("pretrain", "queued", coordizer_id)
    assert '"steps": 300' in params and '"preset": "tiny"' in params
    db.close()
    # A second start queues nothing more.
    db = _init(tmp_path, QIG_BOOTSTRAP_STEPS="300")
    assert db.execute("select count(*) from learning_finetunejob").fetchone() == (2,)


def test_it_queues_nothing_when_bootstrap_is_off(tmp_path: Path) -> None:
    db = _init(tmp_path, QIG_BOOTSTRAP="0")
    assert db.execute("select count(*) from learning_finetunejob").fetchone() == (0,)
    assert db.execute("select count(*) from constellation_kernel").fetchone() == (240,)
