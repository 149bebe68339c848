"""agent.netns: a namespace name that cannot be entered is one quoted line, whatever it holds."""
from __future__ import annotations

import pytest

from agent import netns


@pytest.mark.parametrize("name, says", [
    pytest.param("vbx-none\n", "does not exist", id="newline-in-name"),
    # /run/netns itself may be missing on a machine where no namespace was ever added
    pytest.param("..", ("is not a network namespace", "does not exist"), id="dot-dot-is-a-directory"),
    pytest.param("", ("is not a network namespace", "does not exist"), id="empty-is-the-directory"),
    pytest.param("a\x00b", "embedded null byte", id="nul-in-name"),
])
def test_enter_for_process_refuses_in_one_line(name: str, says: str | tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exc:
        netns.enter_for_process(name)
    message = str(exc.value.code)
    wanted = (says,) if isinstance(says, str) else says
    assert any(w in message for w in wanted) and "\n" not in message and "\x00" not in message, message
