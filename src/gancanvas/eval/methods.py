"""What `evaluate_*` and `gancanvas eval` accept as a method, resolved one way for every protocol:
a baseline name, a model name or file (loaded as a pipeline), a pipeline, or a plain callable.
A model of another task is one InputError line saying which protocol evaluates it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import InputError

#: task -> (the protocol's name, how to evaluate a model of that task)
PROTOCOLS = {
    "inpaint": ("inpainting", "--masks DIR (a mask set from `gancanvas data masks`)"),
    "outpaint": ("outpainting", "--margins DIR (a margin set from `gancanvas data margins`)"),
    "synthesize": ("label-to-image", "--labels DIR --images DIR [--instances DIR]"),
}


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def check_task(pipe, task: str, option: str) -> None:
    """A loaded pipeline must be of `task`, the task of the protocol selected by `option`."""
    if pipe.task != task:
        t = pipe.task
        raise InputError(f"model '{pipe.name}' is {article(t)} '{t}' model ({pipe.arch}): evaluate it with "
                         f"{PROTOCOLS[t][1]}, not {option}")


def resolve_method(method: Any, *, task: str, option: str, baselines: dict[str, Callable],
                   adapt: Callable[[Any], Callable], device="cpu") -> tuple[str, Callable, Any]:
    """(display name, fn, pipeline or None). `adapt(pipeline)` turns a pipeline of `task` into the
    protocol's function signature."""
    from ..pipelines import Pipeline, load

    if isinstance(method, (str, os.PathLike)):
        if str(method) in baselines:
            return str(method), baselines[str(method)], None
        method = load(method, device=device)
    if isinstance(method, Pipeline):
        check_task(method, task, option)
        return method.name, adapt(method), method
    if callable(method):
        return getattr(method, "__name__", "method"), method, None
    what = PROTOCOLS[task][0]
    raise InputError(f"not {article(what)} {what} method: {type(method).__name__}")
