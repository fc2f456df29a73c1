"""Errors a user can act on; their messages are shown as they are and never carry key material."""


class ShaketuneError(Exception):
    """A problem with the user's input or environment, reported without a stack trace."""


class SettingsError(ShaketuneError):
    """A shaking-settings object or file is invalid."""


class KeyFileError(ShaketuneError):
    """A key file cannot be read, is damaged, or is of an unsupported format."""


class KeyMismatchError(ShaketuneError):
    """A key was made for another model, vocabulary or shaken model than the one given."""


class UnsupportedModelError(ShaketuneError):
    """A model lacks what shaking needs (an input embedding) or has vocabulary tensors we cannot map."""
