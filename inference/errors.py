"""`RequestError`: a value a picture is asked with is wrong, and which field it is.

A request's fields (inference/request.py), a sampler or schedule name (inference/samplers.py) and a picture's bytes
(inference/pictures.py) all raise it; the A1111 API answers it with a 422 naming the field, the admin's tuning form
shows it beside the field.
"""

from __future__ import annotations


class RequestError(ValueError):
    """A request field is missing, of the wrong type or out of range.

    Args:
        field (`str`): the field at fault, in A1111 naming (e.g. ``"steps"``).
        message (`str`): what is wrong and what would be right.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
