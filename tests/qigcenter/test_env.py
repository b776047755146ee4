from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qigcenter.env import (
    ConfigError,
    env_bool,
    env_float,
    env_host,
    env_int,
    env_list,
    env_url,
    is_loopback,
)

ROOT = Path(__file__).resolve().parents[2]


def test_it_reads_typed_values() -> None:
    env = {"A": "42", "B": "yes", "C": "0.5", "D": "a, b,,c", "E": "redis://127.0.0.1:6379/0"}
    assert env_int("A", 1, environ=env) == 42
    assert env_bool("B", False, environ=env) is True
    assert env_float("C", 1.0, environ=env) == 0.5
    assert env_list("D", [], environ=env) == ["a", "b", "c"]
    assert env_url("E", ("redis",), environ=env) == "redis://127.0.0.1:6379/0"


def test_it_uses_defaults_when_unset() -> None:
    assert env_int("MISSING", 9200, environ={}) == 9200
    assert env_bool("MISSING", True, environ={}) is True
    assert env_url("MISSING", ("redis",), environ={}) is None


@pytest.mark.parametrize(
    ("reader", "value", "expected"),
    [
        (lambda e: env_int("QIG_PORT", 9200, environ=e), "abc", "an integer"),
        (
            lambda e: env_int("QIG_PORT", 9200, minimum=1, maximum=65535, environ=e),
            "70000",
            "≤ 65535",
        ),
        (lambda e: env_bool("QIG_PORT", False, environ=e), "maybe", "true/false"),
        (lambda e: env_float("QIG_PORT", 1.0, environ=e), "nan", "finite"),
        (lambda e: env_url("QIG_PORT", ("redis",), environ=e), "http://x", "redis://"),
        (lambda e: env_host("QIG_PORT", "127.0.0.1", environ=e), "bad host!", "IP address"),
    ],
)
def test_it_refuses_bad_values_naming_the_variable(reader, value, expected) -> None:
    with pytest.raises(ConfigError) as caught:
        reader({"QIG_PORT": value})
    assert "QIG_PORT" in str(caught.value)
    assert expected in str(caught.value)


def test_it_knows_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_it_explains_a_bad_port_without_a_traceback(tmp_path: Path) -> None:
    qig = Path(sys.executable).parent / "qig"
    result = _run([str(qig), "up"], {"QIG_PORT": "abc", "QIG_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "QIG_PORT='abc' is not valid: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_it_refuses_to_open_the_api_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    qig = Path(sys.executable).parent / "qig"
    env = {"QIG_DATA_DIR": str(tmp_path), "QIG_API_KEY": ""}
    result = _run([str(qig), "up", "--host", "0.0.0.0", "--port", "9399"], env)
    assert result.returncode == 2
    assert "QIG_API_KEY" in result.stderr


def test_it_generates_the_secret_key_once_under_the_data_dir(tmp_path: Path) -> None:
    code = "from django.conf import settings; print(settings.SECRET_KEY, settings.DEBUG)"
    env = {
        "QIG_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "qigcenter.settings",
        "QIG_SECRET_KEY": "",
        "DJANGO_SECRET_KEY": "",
        "QIG_DEBUG": "",
    }
    first = _run([sys.executable, "-c", code], env)
    second = _run([sys.executable, "-c", code], env)
    assert first.returncode == 0, first.stderr
    key, debug = first.stdout.split()
    assert len(key) >= 50 and debug == "False"
    assert second.stdout == first.stdout
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (tmp_path / "uploads").is_dir() and (tmp_path / "checkpoints").is_dir()
