"""The rule for tests that need a system program: skip where it is missing, fail under CI."""

from __future__ import annotations

import pytest
from sysdeps import need_program


@pytest.mark.parametrize("env", [{}, {"CI": "1"}, {"CI": "true"}, {"CURATE_REQUIRE_SYSTEM_DEPS": "1"}])
def test_a_missing_program_skips_except_under_ci(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("CURATE_REQUIRE_SYSTEM_DEPS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    expected = pytest.fail.Exception if env else pytest.skip.Exception
    with pytest.raises(expected, match="curate-no-such-program.*apt-get install some-package"):
        need_program("curate-no-such-program", "some-package")


def test_a_present_program_is_found() -> None:
    assert need_program("sh", "dash").endswith("/sh")
