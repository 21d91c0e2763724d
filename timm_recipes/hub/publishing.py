"""Publish an export folder (or a model) to the Hugging Face Hub in one commit, or not at all.

:func:`publish` checks the folder (timm's layout, safetensors only, loads in timm), checks the token, creates the
repository if needed, checks what the repository already holds (the same architecture; no weights unless
``overwrite``), then uploads every file in ONE commit with ``HfApi.create_commit``. ``upload_folder`` is not used:
with ``hf_xet`` installed it streams large folders in several commits (and retries a failed commit in smaller ones),
which can leave a half-published repository; ``create_commit`` sends one commit whatever the folder's size. If the
commit fails on a repository that this call created, the empty repository is deleted again.

The token comes from the ``token`` argument, the ``HF_TOKEN`` environment variable or the saved login
(``hf auth login``), in that order; it is never printed, logged, or put into an error message.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from timm_recipes.hub.errors import (
    HubAuthError,
    HubConflictError,
    HubConnectionError,
    HubError,
    HubRepoNotFoundError,
)
from timm_recipes.network import NetworkError, bounded_network, network_timeout

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PICKLE_SUFFIXES", "PublishResult", "check_export_folder", "publish"]

_LOG = logging.getLogger("timm_recipes.hub")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".tar")
"""File types that may hold pickled Python objects: never published (weights go out as safetensors only)."""
_WEIGHT_SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors")


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` did.

    Attributes:
        repo_id: The repository.
        revision: The branch the commit went to (``main`` unless given), or the pull request's ref.
        commit_oid: The commit's id.
        commit_url: The commit's URL.
        pr_url: The pull request's URL, when ``create_pr``.
        files: The files in the commit.
        created_repo: Whether this call created the repository.
    """

    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str
    pr_url: str | None
    files: tuple[str, ...]
    created_repo: bool


# ------------------------------------------------------------------------------------------------ errors


def _network_errors() -> tuple[type[BaseException], ...]:
    """The HTTP libraries' transport errors (huggingface_hub has used requests, httpx and httpx2)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    candidates = {
        "httpx2": ("TransportError",),
        "httpx": ("TransportError",),
        "requests": ("ConnectionError", "Timeout"),
    }
    for module, names in candidates.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        errors += [getattr(mod, name) for name in names if isinstance(getattr(mod, name, None), type)]
    return tuple(errors)


_NETWORK_ERRORS = _network_errors()


def _token_source(token_given: bool) -> str:
    if token_given:
        return "the token argument"
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "the HF_TOKEN environment variable"
    return "the saved login"


@contextmanager
def _hub_errors(repo_id: str, endpoint: str, token_source: str) -> Iterator[None]:
    """Turn the client's exceptions into the errors of :mod:`timm_recipes.hub.errors`, with what to do about them."""
    try:
        yield
    except HubError:
        raise
    except NetworkError as err:  # bounded_network's: names the endpoint and the cause already
        raise HubConnectionError(str(err)) from err
    except OfflineModeIsEnabled as err:
        raise HubConnectionError("HF_HUB_OFFLINE is set: publishing needs the network. Unset it and retry.") from err
    except RepositoryNotFoundError as err:
        raise HubRepoNotFoundError(
            f"repository {repo_id!r} not found on {endpoint} (or it is private and {token_source} cannot see it)"
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise HubAuthError(
                f"the Hub at {endpoint} rejected the token from {token_source} (401 Unauthorized): it is invalid or "
                "expired. Create a token with write access at https://huggingface.co/settings/tokens and pass it as "
                "token=... (Python), set HF_TOKEN, or run `hf auth login`."
            ) from err
        if status == 403:
            raise HubAuthError(
                f"the token from {token_source} may not write to {repo_id!r} (403 Forbidden): use a token with write "
                f"access to the namespace {repo_id.split('/')[0]!r}."
            ) from err
        message = err.server_message or str(err).splitlines()[0]
        raise HubError(f"the Hub at {endpoint} answered {status} while publishing {repo_id!r}: {message}") from err
    except _NETWORK_ERRORS as err:
        raise HubConnectionError(
            f"cannot reach the Hub at {endpoint} ({type(err).__name__}: {err}). Check the network, the proxy "
            "settings and HF_ENDPOINT."
        ) from err


# ------------------------------------------------------------------------------------------------ the folder


def check_export_folder(folder: str | os.PathLike[str], *, load: bool = True) -> dict[str, Any]:
    """Check that ``folder`` is a publishable export; returns its ``config.json``.

    It must hold ``model.safetensors`` and ``config.json`` (with an ``architecture``), no file that may hold a
    pickle (:data:`PICKLE_SUFFIXES`), and (with ``load``) load in timm with ``local-dir:``.

    Raises:
        FileNotFoundError: no such folder, or a required file is missing.
        ValueError: a pickle file, or a config.json that is not timm's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"export folder {str(folder)!r} does not exist")
    for required in ("model.safetensors", "config.json"):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"export folder {str(folder)!r} has no {required} (write it with export())")
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"export folder {str(folder)!r} holds files that may contain pickles: {pickles}; "
                         "only safetensors weights are published")  # fmt: skip
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        architecture = config["architecture"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / 'config.json'} is not a timm config (no 'architecture'): {err}") from err
    if not (folder / "README.md").is_file():
        _LOG.warning("export folder %s has no README.md: the repository will have no model card", folder)
    if load:
        import timm

        import timm_recipes  # noqa: F401  (registers recipe_* architectures)

        try:
            timm.create_model(f"local-dir:{folder}", pretrained=True)
        except Exception as err:
            raise ValueError(f"export folder {str(folder)!r} ({architecture}) does not load in timm: {err}") from err
    return config


def _upload(folder: Path, path: str, repo_id: str, info: Mapping[str, Any]) -> Any:
    """The commit operation of one file; the card's ``<org>/<name>`` placeholder becomes the real repository."""
    if path == "README.md":
        text = (folder / path).read_text(encoding="utf-8")
        placeholder = f"<org>/{info.get('model')}.{info.get('tag')}"
        if placeholder in text:
            return CommitOperationAdd(path, text.replace(placeholder, repo_id).encode("utf-8"))
    return CommitOperationAdd(path, str(folder / path))


def _folder_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


# ------------------------------------------------------------------------------------------------ the repository


def _remote_config(api: HfApi, repo_id: str, revision: str) -> dict[str, Any] | None:
    try:
        path = api.hf_hub_download(repo_id, "config.json", revision=revision)
    except (EntryNotFoundError, RevisionNotFoundError):
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _check_repository(
    api: HfApi, repo_id: str, revision: str, config: Mapping[str, Any], *, private: bool, overwrite: bool, pr: bool
) -> list[str]:
    """Refuse another architecture, a public repo when private was asked, and (unless ``overwrite``) weights.

    Returns the remote weight files that the commit deletes (stale weights replaced under ``overwrite``).
    """
    info = api.model_info(repo_id)
    if private and not info.private:
        raise HubConflictError(
            f"{repo_id!r} exists and is public, but private=True was asked: publishing would make the weights "
            "public. Make the repository private first, or pass private=False."
        )
    try:
        remote_files = api.list_repo_files(repo_id, revision=revision)
    except RevisionNotFoundError:
        return []
    remote = _remote_config(api, repo_id, revision) if "config.json" in remote_files else None
    if remote is not None and remote.get("architecture") != config["architecture"]:
        raise HubConflictError(
            f"{repo_id!r} holds a {remote.get('architecture')!r} model, not {config['architecture']!r}: publish these "
            "weights to another repository (one repository per architecture and tag: recipe_<arch>.<tag>)."
        )
    weights = [f for f in remote_files if f.lower().endswith(_WEIGHT_SUFFIXES)]
    if weights and not overwrite and not pr:
        raise HubConflictError(
            f"{repo_id!r} (revision {revision!r}) already holds weights ({', '.join(weights)}); pass overwrite=True "
            "(CLI: --overwrite) to replace them, create_pr=True (--create-pr) to propose them as a pull request, or "
            "publish to another repository."
        )
    return weights if overwrite and not pr else []


def publish(
    source: str | os.PathLike[str] | nn.Module,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    overwrite: bool = False,
    endpoint: str | None = None,
    export_kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> PublishResult:
    """Upload an export folder (or a model, exported to a temporary folder first) to ``repo_id`` in one commit.

    Args:
        source: A folder written by :func:`~timm_recipes.hub.export`, or a model (then ``export_kwargs`` go to
            ``export``, with ``repo_id`` for the card).
        repo_id: ``"org/recipe_<arch>.<tag>"``.
        token: A Hugging Face token with write access; default ``HF_TOKEN``, then the saved login.
        private: Create the repository private (and refuse to publish into an existing public one).
        revision: The branch to commit to (created from ``main`` if missing); default ``main``.
        commit_message: Default ``"Upload <name> with timm-recipes"``.
        create_pr: Open a pull request instead of committing to the branch (existing weights are then allowed:
            nothing is replaced until the pull request is merged).
        overwrite: Replace weights that the repository already holds (stale weight files are deleted in the same
            commit).
        endpoint: The Hub's URL; default ``HF_ENDPOINT`` (https://huggingface.co).
        export_kwargs: Keyword arguments of ``export`` when ``source`` is a model.
        timeout: Seconds the endpoint may stay silent before publishing gives up (any answer restarts the clock);
            default ``$TIMM_RECIPES_HUB_TIMEOUT``, else 30 (:func:`timm_recipes.network.bounded_network`).

    Returns:
        A :class:`PublishResult`.

    Raises:
        HubAuthError: no token, an invalid token (401), or no write access (403).
        HubConnectionError: the endpoint cannot be reached.
        HubRepoNotFoundError: the repository cannot be found.
        HubConflictError: weights already there (without ``overwrite``), another architecture, a public repository
            when ``private`` was asked.
        HubError: any other answer of the Hub.
        HubConnectionError: also when the endpoint stays silent for ``timeout`` seconds (naming it).
    """
    network_timeout(timeout)  # a bad value is refused before anything else
    validate_repo_id(repo_id)
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'owner/name', got {repo_id!r}")
    is_folder = isinstance(source, (str, os.PathLike))
    if export_kwargs and is_folder:
        raise ValueError("export_kwargs: only used when source is a model, not an export folder")
    config = check_export_folder(source) if is_folder else None  # before any request
    resolved = token if token is not None else get_token()
    if not resolved:
        raise HubAuthError(
            "no Hugging Face token: pass token=... (Python), set the HF_TOKEN environment variable, or run "
            "`hf auth login` "
            "(a token with write access, from https://huggingface.co/settings/tokens)."
        )
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    from timm_recipes import __version__

    api = HfApi(endpoint=endpoint, token=resolved, library_name="timm-recipes", library_version=__version__)
    target = _Target(api, repo_id, revision, private, create_pr, overwrite, commit_message)
    waiting = bounded_network(f"publishing to {repo_id!r}", timeout=timeout, endpoint=endpoint)
    with _hub_errors(repo_id, endpoint, _token_source(token is not None)), waiting:
        api.whoami()  # a clear 401 before anything is exported or created
        if config is not None:
            return _publish_folder(Path(source), config, target)
        from timm_recipes.hub.exporting import export

        with tempfile.TemporaryDirectory(prefix="timm-recipes-export-") as tmp:
            folder = export(source, Path(tmp) / "export", repo_id=repo_id, **dict(export_kwargs or {}))
            return _publish_folder(folder, check_export_folder(folder, load=False), target)  # just loaded back


@dataclass(frozen=True)
class _Target:
    api: HfApi
    repo_id: str
    revision: str | None
    private: bool
    create_pr: bool
    overwrite: bool
    commit_message: str | None


def _publish_folder(folder: Path, config: Mapping[str, Any], t: _Target) -> PublishResult:
    """Create the repository if needed, check it, and send every file of ``folder`` in one commit."""
    api, repo_id, branch = t.api, t.repo_id, t.revision or "main"
    files = _folder_files(folder)
    info = config.get("timm_recipes", {})
    message = t.commit_message or f"Upload {info.get('model', config['architecture'])}.{info.get('tag', '')}"
    created = False
    if not api.repo_exists(repo_id):
        api.create_repo(repo_id, private=t.private, exist_ok=True)
        created = True
    try:
        stale = _check_repository(
            api, repo_id, branch, config, private=t.private, overwrite=t.overwrite, pr=t.create_pr
        )
        if t.revision is not None and t.revision != "main" and not t.create_pr:
            api.create_branch(repo_id, branch=t.revision, exist_ok=True)
        operations: list[Any] = [_upload(folder, path, repo_id, info) for path in files]
        operations += [CommitOperationDelete(path) for path in stale if path not in files]
        commit = api.create_commit(
            repo_id, operations, commit_message=message, revision=t.revision, create_pr=t.create_pr
        )
    except BaseException:
        if created:
            _delete_quietly(api, repo_id)
        raise
    _LOG.info("published %d files to %s (commit %s)", len(files), repo_id, commit.oid)
    return PublishResult(
        repo_id=repo_id,
        revision=commit.pr_revision or branch,
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        pr_url=commit.pr_url,
        files=tuple(files),
        created_repo=created,
    )


def _delete_quietly(api: HfApi, repo_id: str) -> None:
    """Delete the repository this call created, after a failed commit (best effort: the first error matters)."""
    try:
        api.delete_repo(repo_id, missing_ok=True)
        _LOG.warning("the commit failed: deleted the repository %s that this call had created", repo_id)
    except Exception as err:
        _LOG.warning("the commit failed and the empty repository %s could not be deleted: %s", repo_id, err)
