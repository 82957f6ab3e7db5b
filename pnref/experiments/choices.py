"""Names given on the command line, matched whatever their case (``--norms bn`` or ``BN``)."""

from __future__ import annotations

from pnref._outputs import CommandError

__all__ = ["norm_list"]


def norm_list(text: str | None, known: tuple[str, ...],
              option: str = "--norms") -> list[str] | None:
    """The comma-separated names in ``text``, each spelled as in ``known``; None if ``text`` is.

    Raises
    ------
    CommandError
        Naming ``option``, the unknown names and the choices, if a name matches none of
        ``known`` ignoring case, or if ``text`` names nothing.
    """
    if text is None:
        return None
    by_folded = {name.casefold(): name for name in known}
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name.casefold() not in by_folded]
    if unknown or not names:
        raise CommandError(
            f"{option} {text!r}: unknown norm {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(known)} (any case)")
    return [by_folded[name.casefold()] for name in names]
