"""The test harness itself (tests/conftest.py): parsing Python from two threads at once must not
raise CPython 3.11's "AST constructor recursion depth mismatch" (python/cpython#106905), which
once aborted a CI run with INTERNALERROR while pytest rendered a failure.

Without the conftest's lock this test reproduces the error within its 30 parses per thread (seen:
13 SystemErrors); the finalizers and a tiny switch interval make the threads change hands inside
`ast.parse`, as a garbage collection with Python finalizers does in the real suite."""

import ast
import gc
import inspect
import sys
import threading


class _FinalizerWithBytecode:
    def __del__(self):
        sum(range(50))  # Python code in a finalizer: a point where the interpreter may switch threads


def _at_depth(depth: int, fn):
    return fn() if depth == 0 else _at_depth(depth - 1, fn)


def test_two_threads_parse_python_at_once_without_system_error():
    source = inspect.getsource(inspect)  # a long module: each parse takes a while
    errors: list[str] = []

    def parse_repeatedly(depth: int):
        for _ in range(30):
            garbage = [_FinalizerWithBytecode() for _ in range(200)]
            garbage.append([garbage])  # a cycle: freed by the collector, mid-parse
            del garbage
            try:
                _at_depth(depth, lambda: ast.parse(source))
            except SystemError as error:
                errors.append(str(error))

    old_interval, old_threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50)
    try:
        threads = [threading.Thread(target=parse_repeatedly, args=(depth,)) for depth in (0, 40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old_interval)
        gc.set_threshold(*old_threshold)
    assert errors == []
