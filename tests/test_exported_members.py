"""The public API is exactly jrpc_unix.__all__, every name resolves, and nothing else leaks.

The face (``jrpc_unix/__init__.py``) names each public name twice: once for type checkers (the
``TYPE_CHECKING`` imports) and once for the lazy ``__getattr__`` (``_EXPORTS``). A name in only
one of them would type as ``Any`` for users or fail at run time, so the two are held equal here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import subprocess
import sys
import typing

import pytest

import jrpc_unix
from jrpc_unix import Methods

PUBLIC = {
    "Access", "AddressInUseError", "AsyncClient", "AsyncFleet", "AsyncSubscription", "Call", "Client",
    "ConnectError", "ConnectionClosedError", "ErrorCode", "Fleet", "JrpcUnixError", "Limits", "Listen",
    "Methods", "Notify", "Outcome",
    "Peer", "Policy", "ProtocolError", "RequestContext", "Response", "RpcError", "RpcTimeoutError",
    "Server", "ServerSetupError", "ServerThread", "Settings", "Status", "Subscription", "TransportError",
    "current_context", "expand_targets", "open_client", "run", "serve", "serve_in_thread", "setting",
}  # fmt: skip


def _type_checking_imports() -> list[tuple[str, str]]:
    """(name, module) of each ``from .module import name as name`` under ``if TYPE_CHECKING:``."""
    tree = ast.parse(inspect.getsource(jrpc_unix))
    blocks = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    assert len(blocks) == 1
    pairs = []
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        assert node.level == 1
        assert node.module is not None
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be re-exported as itself"
            pairs.append((alias.name, node.module))
    return pairs


def test_all_is_the_public_api() -> None:
    assert set(jrpc_unix.__all__) == PUBLIC
    assert jrpc_unix.__all__ == sorted(PUBLIC)
    assert set(dir(jrpc_unix)) == PUBLIC | {"__version__"}


def test_the_type_checking_imports_and_the_lazy_table_name_the_same_things() -> None:
    assert _type_checking_imports() == list(jrpc_unix._EXPORTS.items())


def test_every_public_name_resolves_to_the_module_that_defines_it() -> None:
    for name in jrpc_unix.__all__:
        value = getattr(jrpc_unix, name)
        module = importlib.import_module(f"jrpc_unix.{jrpc_unix._EXPORTS[name]}")
        assert value is getattr(module, name)
        assert value.__module__ == module.__name__, name  # where it is defined, not re-exported


def test_the_annotations_of_every_public_name_resolve() -> None:
    """What ``typing.get_type_hints`` needs (dataclass tools, IDEs): a reason the names keep the
    ``__module__`` of their defining module (specs/design-notes.md, "The public face")."""
    for name in jrpc_unix.__all__:
        typing.get_type_hints(getattr(jrpc_unix, name))


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match=r"^module 'jrpc_unix' has no attribute 'NoSuchName'$"):
        jrpc_unix.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_the_version_is_the_distributions() -> None:
    assert jrpc_unix.__version__ == importlib.metadata.version("jrpc-unix")


def test_importing_the_package_imports_nothing_of_its_own_and_nothing_third_party() -> None:
    """Every CLI start imports the package: it must pull in no module of its own (each name, even
    ``__version__``, loads on first use) and nothing beyond the standard library (trio,
    jsonrpcserver, orjson, jsonrpcclient load with the names that need them)."""
    code = (
        "import sys; before = set(sys.modules); import jrpc_unix; "
        "print(sorted(m for m in set(sys.modules) - before if m != 'jrpc_unix'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    assert [name for name in loaded if name.startswith("jrpc_unix")] == []
    assert {name.split(".")[0] for name in loaded} <= sys.stdlib_module_names, loaded


def test_the_asyncio_face_is_a_public_submodule_the_package_does_not_load() -> None:
    """``jrpc_unix.aio`` is imported by name: a trio program or the CLI never loads it."""
    code = "import sys, jrpc_unix; jrpc_unix.Server; print('jrpc_unix.aio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    import jrpc_unix.aio

    assert jrpc_unix.aio.__all__ == ["open_client", "serve", "serving"]
    for name in jrpc_unix.aio.__all__:
        typing.get_type_hints(getattr(jrpc_unix.aio, name))


def test_the_demo_service_is_a_public_module() -> None:
    """``jrpc-unix serve jrpc_unix.demo:methods SOCK`` is documented: the path, the service only."""
    from jrpc_unix import demo

    assert isinstance(demo.methods, Methods)
    assert demo.__all__ == [
        *("MAX_CONFIG_KEYS", "MAX_KEY_LENGTH", "MAX_VALUE_BYTES"),
        *("DemoSettings", "config", "methods", "settings"),
    ]
    assert {"ping", "subtract", "config.set", "config.get", "work", "crash"} <= set(demo.methods)
