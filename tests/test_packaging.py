"""The installed distribution holds only the library: no top-level `configs`, `experiments` or
`benchmarks` package lands in site-packages, where it would shadow a user's own modules."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_contains_only_alignax(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("alignax", "configs", "experiments", "benchmarks"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    shutil.copy(REPO_ROOT / "setup.py", source / "setup.py")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("alignax-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {name for name in top_level if not name.endswith(".dist-info")}
    assert packages == {"alignax"}, packages
    names = zipfile.ZipFile(wheel).namelist()
    assert "alignax/data/builtin/arith_pairs_train.jsonl" in names  # the built-in data ships with it
