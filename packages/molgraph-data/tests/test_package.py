"""The package's lazily loaded names."""

from __future__ import annotations

import subprocess
import sys


def test_a_name_loaded_with_its_submodule_is_still_the_function() -> None:
    """``ensure_store`` lives in the submodule ``convert``: loading it first must not leave
    ``molgraph_data.convert`` naming the submodule instead of the function (a fresh
    interpreter, so no earlier import hides the order), and no name needs torch to load."""
    code = (
        "import sys, types\n"
        "from molgraph_data import ensure_store, convert\n"
        "assert callable(convert) and not isinstance(convert, types.ModuleType), convert\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_exported_name_is_a_module() -> None:
    import types

    import molgraph_data as md

    assert not [n for n in md.__all__ if isinstance(getattr(md, n), types.ModuleType)]
