"""Errors a user can act on.

Every problem with user input (files, configs, checkpoints, options) is raised as a
`GancanvasError` subclass whose message is one line naming the thing and the problem.
The CLI prints that line and exits with code 2; nothing deeper should leak a traceback.
"""

from __future__ import annotations


class GancanvasError(Exception):
    """Base class: a problem the user can fix. `str(err)` is one readable line."""

    exit_code = 2


class InputError(GancanvasError):
    """Bad user data: an image, mask, sketch, label map or folder."""


class ImageReadError(InputError):
    """A file that cannot be read as an image (missing, empty, corrupt, unsupported)."""


class MaskError(InputError):
    """A mask that does not fit its image (size, no hole, wrong format)."""


class StyleError(InputError):
    """SEAN style codes that cannot be used: not a style file, another model or class set, an
    unknown region, an interpolation weight outside [0, 1], crossover flags that do not fit."""


class ConfigError(GancanvasError):
    """A configuration with an unknown key, a wrong type or an impossible value."""


class CheckpointError(GancanvasError):
    """A checkpoint that cannot be loaded: corrupt, another model family, missing keys."""


class ModelNotFoundError(GancanvasError):
    """A model name that is neither registered nor a readable file."""


class MissingWeightsError(GancanvasError):
    """A metric or loss needs a pretrained weights file (VGG, Inception, LPIPS) that was not given."""


class MissingDependencyError(GancanvasError):
    """An optional package (an extra such as gancanvas[web]) is not installed."""
