"""`--help` of the experiment entry points: presets, config keys with defaults and meanings, losses.

Rendered from the config file itself (its docstring, `PRESETS`, `get_config()`), the key meanings in
configs/base.py (`KEY_HELP`) and the loss registry, so the help cannot drift from the code.
"""

from __future__ import annotations

import importlib.util
import os


def _config_module(repo_root: str, config_arg: str):
    path = config_arg.split(":")[0]
    path = path if os.path.isabs(path) else os.path.join(repo_root, path)
    spec = importlib.util.spec_from_file_location("_help_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _flatten(config, prefix=""):
    for key, value in sorted(config.items()):
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _config_arg(argv: list[str], default_config: str) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return default_config


def _loss_lines(config) -> list[str]:
    from alignax import losses

    names = [n for n in losses.names() if losses.info(n).method == config.method and losses.info(n).config]
    lines = [f"Losses (--config.loss.name; default {config.loss.name!r}); unset hyperparameters take these defaults:"]
    for name in names:
        entry = losses.info(name)
        hparams = ", ".join(f"{k}={v!r}" for k, v in entry.defaults().items()) or "none"
        lines.append(f"  {name:14s} {hparams}  [its config: {entry.config}]")
    return lines


def render(repo_root: str, default_config: str, argv: list[str]) -> str:
    from configs import base

    config_arg = _config_arg(argv, default_config)
    path, module = _config_module(repo_root, config_arg)
    config = module.get_config(config_arg.split(":")[1] if ":" in config_arg else "cpu")
    lines = [
        (module.__doc__ or "").strip(),
        "",
        "Usage: python -m experiments.<name> --config CONFIG.py[:PRESET] --workdir DIR [--config.KEY=VALUE ...]",
        "       [--start_over]   (rerunning with the same --workdir resumes)",
        "",
        f"Presets of {os.path.relpath(path, repo_root)}: {', '.join(sorted(module.PRESETS))}",
        "",
    ]
    lines += _loss_lines(config) + ["", "Config keys (value in this preset) and meaning:"]
    for key, value in _flatten(config):
        meaning = base.KEY_HELP.get(key) or base.KEY_HELP.get(key.split(".")[0] + ".*", "")
        lines.append(f"  --config.{key}={value!r}" + (f"\n        {meaning}" if meaning else ""))
    return "\n".join(lines)
