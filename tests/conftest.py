"""Shared test set-up. Fake CPU devices must be requested before jax is imported."""

import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import ast  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402

# CPython 3.11 keeps the AST constructor's recursion counter in interpreter-wide state
# (python/cpython#106905): two threads inside `ast.parse` at once (pytest rendering a traceback
# while a server or Orbax thread formats one: `traceback` parses source for its carets) raise
# "SystemError: AST constructor recursion depth mismatch", which aborted a CI run with
# INTERNALERROR. One parse at a time in the test process; re-entrant for a parse inside a parse.
_AST_PARSE_LOCK = threading.RLock()
_unguarded_ast_parse = ast.parse


def _one_ast_parse_at_a_time(*args, **kwargs):
    with _AST_PARSE_LOCK:
        return _unguarded_ast_parse(*args, **kwargs)


ast.parse = _one_ast_parse_at_a_time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
EVALDATA = SHARED / "evaldata"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavy test (real SmolLM2 model, multi-process); runs in CI")


# The longest test files (`make test --durations`, stop 22: test_real_dpo.py 458 s alone, the
# notebooks ~230 s, the precomputed-reference tests ~180 s) go first: under `make test`'s two xdist
# workers (one file per unit of work) they then run beside the rest of the suite, not alone at its end.
LONGEST_FILES = ("test_real_dpo.py", "test_notebooks.py", "test_train_reference.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Under CI=true a skip is a failure: a missing ../shared/evaldata or a broken torch/transformers/trl
# install must not pass as green (every test here can run on the CI machine).
_SKIPPED_IN_CI: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _note_skip(report) -> None:
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED_IN_CI.append(f"{report.nodeid}: {report.longrepr}")


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)


_FINAL_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _note_ci_skips(session)
    _FINAL_STATUS.append(int(session.exitstatus))


def pytest_unconfigure(config):
    """Leave without interpreter finalization once pytest has printed its summary: a daemon thread
    left inside XLA's C++ code (a server's engine thread, a client pool) is otherwise torn down by
    the finalizer and aborts the process ("FATAL: exception not rethrown"), turning a passing run
    into exit 134. The exit status is pytest's own."""
    if _FINAL_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_FINAL_STATUS[-1])


def _note_ci_skips(session) -> None:
    if _SKIPPED_IN_CI:
        print(f"\nCI=true: {len(_SKIPPED_IN_CI)} skipped test(s) count as failures:")
        for line in _SKIPPED_IN_CI:
            print(f"  SKIPPED {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def evaldata_dir():
    if not EVALDATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {EVALDATA}")
    return EVALDATA
