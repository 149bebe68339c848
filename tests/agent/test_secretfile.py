"""agent.secretfile: the one reader of secret files; an error names the file, never what it holds."""
from __future__ import annotations

import pytest

from agent.secretfile import SecretFileError, read_headers, read_secret

SECRET = "s3cr3t-t0ken-value"


def test_the_secret_is_stripped(tmp_path):
    (tmp_path / "t").write_text(f"  {SECRET}\n")
    assert read_secret(str(tmp_path / "t")) == SECRET


@pytest.mark.parametrize("content, message", [
    pytest.param(None, "cannot read '{path}': No such file or directory", id="missing"),
    pytest.param("\n \n", "'{path}' is empty", id="empty"),
    pytest.param(b"\xff\xfe" + SECRET.encode(), "'{path}' is not UTF-8 text", id="not-utf8"),
])
def test_an_unusable_file_is_one_error_naming_it(tmp_path, content, message):
    path = tmp_path / "t"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SecretFileError) as exc:
        read_secret(str(path))
    assert str(exc.value) == message.format(path=path) and SECRET not in str(exc.value)


def test_headers_file_errors_name_the_line_never_the_value(tmp_path):
    path = tmp_path / "h"
    path.write_text(f"# comment\nAuthorization: Bearer {SECRET}\n\nX-Scope-OrgID: vobox\n")
    assert read_headers(str(path)) == {"Authorization": f"Bearer {SECRET}", "X-Scope-OrgID": "vobox"}
    path.write_text(f"Authorization Bearer {SECRET}\n")
    with pytest.raises(ValueError) as exc:
        read_headers(str(path))
    assert str(exc.value) == f"{path}: line 1 is not 'Name: value'" and SECRET not in str(exc.value)
