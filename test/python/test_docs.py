"""Runs every ```python block of docs/python.md, in order, in one namespace, in a temporary
directory that holds the repository's examples/ (so the page's paths work as written)."""
import contextlib
import io
import os
import re

import pytest


def doc_blocks(source_dir):
    with open(os.path.join(source_dir, "docs", "python.md"), encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


def test_docs_python_md_runs(source_dir, tmp_path, monkeypatch):
    blocks = doc_blocks(source_dir)
    assert len(blocks) >= 5, "docs/python.md lost its code blocks"
    os.symlink(os.path.join(source_dir, "examples"), tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    namespace, out = {}, io.StringIO()
    for i, code in enumerate(blocks):
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"docs/python.md block {i + 1}", "exec"), namespace)
            except Exception as e:  # name the block that failed
                pytest.fail(f"docs/python.md block {i + 1} raised {type(e).__name__}: {e}")
    assert (tmp_path / "texture.png").stat().st_size > 0
    # The outputs the page shows in comments are the ones printed.
    printed = out.getvalue()
    for shown in ("'relu3_1': (1, 256, 64, 64)", "(1, 3, 256, 256) True", "(1, 3, 48, 48) ['gram:relu1_1'",
                  "True (10, 3)", "['normalized_reconstruction_error:relu3_1']",
                  "(64, 64) True", "(256,)", "unknown layer 'relu9_1'"):
        assert shown in printed, f"{shown!r} not in the page's output:\n{printed}"
