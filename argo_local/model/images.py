"""What the runner is told of a container image (``--entrypoint``, ``--image-path``,
``--workdir``, keyed by the image's name with or without its tag): the pod layer builds a
pod's argv and PATH from it, the checks before a run find a command's program with it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PYTHON_NAMES = ("python", "python3", *tuple(f"python3.{n}" for n in range(8, 20)))


def entrypoint_of(image: Any, entrypoints: Mapping[str, list[str]]) -> list[str]:
    """The ENTRYPOINT given for ``image``: its exact name first, then its name without the tag
    (``registry:5000/team/tool:v2`` -> ``registry:5000/team/tool``) or digest."""
    return of_image(image, entrypoints)


def of_image(image: Any, given: Mapping[str, list[str]]) -> list[str]:
    """What an option gives ``image``: for its exact name first, then for its name without
    the tag (``registry:5000/team/tool:v2`` -> ``registry:5000/team/tool``) or digest."""
    key = image_key(image, given)
    return list(given[key]) if key is not None else []


def image_key(image: Any, given: Mapping[str, Any]) -> str | None:
    """The key of ``given`` that names ``image`` (see :func:`of_image`), or None."""
    if not isinstance(image, str) or not given:
        return None
    name = image.split("@", 1)[0]
    repo, colon, tag = name.rpartition(":")
    untagged = repo if colon and "/" not in tag else name
    for key in (image, name, untagged):
        if key in given:
            return key
    return None


def image_search_path(image: Any, image_paths: Mapping[str, list[str]]) -> str:
    """PATH in a pod of ``image``: the folders --image-path gives it, then this machine's."""
    host = os.environ.get("PATH", os.defpath)
    return os.pathsep.join([*of_image(image, image_paths), host])
