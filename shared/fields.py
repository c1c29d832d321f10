"""Field types that several services validate the same way (German postal codes, names,
phone numbers, genders). Pure pydantic: usable by schemas and rules alike."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

Gender = Literal["male", "female", "diverse", "unspecified"]
Salutation = Literal["Herr", "Frau"]
PostalCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]  # ASCII: \d is any script
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()/-]{5,24}$")
]
