"""Hugging Face hub ids ("mistralai/Mistral-7B-Instruct-v0.2") as model sources.

`resolve(repo_id)` returns the local snapshot folder through huggingface_hub's cache
(`snapshot_download`, https://huggingface.co/docs/huggingface_hub/guides/download): it downloads
the safetensors checkpoint, config and tokenizer files when online and, with `HF_HUB_OFFLINE=1`,
reads the local cache only (`local_files_only=True`). The cache is `HF_HUB_CACHE` (else
`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), read when `resolve` is called, so a test or a
notebook can point it elsewhere after import. Layout: `models--{org}--{name}/snapshots/{rev}/...`
with `refs/main` naming the revision.
"""

from __future__ import annotations

import os
import re

# What a causal-LM checkpoint needs; never the pickled *.bin / *.pt weights (not loaded anyway).
ALLOW_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubModelNotFound(FileNotFoundError):
    """A hub id that is not in the local cache (offline) or cannot be fetched."""


def is_hub_id(source) -> bool:
    """`org/name` (one slash, hub characters) that is not an existing local path."""
    if not isinstance(source, str) or os.path.exists(source):
        return False
    return bool(_REPO_ID.match(source)) and ".." not in source


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir() -> str:
    """The hub cache folder, from the environment at call time (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def offline() -> bool:
    """HF_HUB_OFFLINE (or the legacy TRANSFORMERS_OFFLINE) set now or when huggingface_hub loaded."""
    from huggingface_hub import constants

    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def resolve(repo_id: str, *, revision: str | None = None) -> str:
    """The local folder of hub model `repo_id` (downloaded unless offline); HubModelNotFound naming
    the id, the cache and how to fetch it when it is neither cached nor downloadable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    cache, local_only = cache_dir(), offline()
    try:
        return snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_files_only=local_only,
            allow_patterns=list(ALLOW_PATTERNS),
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as e:
        where = f"revision {revision!r} of " if revision else ""
        if local_only:
            reason = f"{where}hub model {repo_id!r} is not in the local cache {cache} and HF_HUB_OFFLINE=1"
        else:
            reason = f"cannot download {where}hub model {repo_id!r} into {cache}: {type(e).__name__}: {e}"
        raise HubModelNotFound(
            f"{reason}. Fetch it on a machine with network access (`huggingface-cli download {repo_id}`, "
            f"or unset HF_HUB_OFFLINE), point HF_HUB_CACHE at a cache that holds it, or pass the path "
            f"of a local folder with config.json and *.safetensors instead."
        ) from e
