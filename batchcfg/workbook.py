"""Excel manifests: refusing hostile workbooks, finding the sheet, reading its cells.

:func:`check_workbook` looks at the zip directory before anything parses the file.
:func:`read_sheet` reads one worksheet with pandas and python-calamine. The sheet a user names
(``--sheet``) is found as Excel finds it, ignoring case, or by its position counted from 1; a
sheet literally named ``1`` wins over the position. Cells come back as Python values (text,
``int``, ``float``, ``bool``, dates) so that the caller can tell the numbers from the text.
"""

from __future__ import annotations

import warnings
import zipfile
from typing import TYPE_CHECKING, Any

from .errors import ManifestError

if TYPE_CHECKING:
    from pathlib import Path

MAX_WORKBOOK_BYTES = 2 * 2**30  # what a workbook may unpack to
MAX_WORKBOOK_ENTRIES = 10_000
MAX_PACKING_RATIO = 200  # real sheets pack 5-50 times; zip bombs a thousand and more
LISTED_SHEETS = 10  # sheet names a "no sheet named" message lists at most
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an OLE2 file: an old .xls, or an encrypted .xlsx


def cannot_read(path: Path, exc: OSError) -> ManifestError:
    """The error for a manifest the system will not let us read (permissions, I/O)."""
    return ManifestError(f"{path}: cannot read it ({exc.strerror or exc})")


def check_workbook(path: Path) -> None:
    """Refuse a workbook before parsing it: a file that is no workbook (damaged, renamed), a zip
    bomb (it would unpack to more than ``MAX_WORKBOOK_BYTES``, or an entry packs implausibly tight)
    or XML with a DTD (entity expansion: "billion laughs"). Reads only the zip directory and the
    first bytes of each part."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ManifestError(not_a_workbook(path)) from None
    except OSError as exc:
        raise cannot_read(path, exc) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_WORKBOOK_ENTRIES:
            raise ManifestError(f"{path}: refused: {len(entries)} parts in the workbook")
        unpacked = 0
        for entry in entries:
            unpacked += entry.file_size
            if unpacked > MAX_WORKBOOK_BYTES:
                raise ManifestError(f"{path}: refused: it unpacks to more than "
                                    f"{MAX_WORKBOOK_BYTES // 2**20} MiB")
            if entry.file_size > 2**20 and entry.file_size > MAX_PACKING_RATIO * max(1, entry.compress_size):
                raise ManifestError(f"{path}: refused: {entry.filename} unpacks to "
                                    f"{entry.file_size // max(1, entry.compress_size)} times its size "
                                    "(a decompression bomb?)")
            if entry.filename.endswith((".xml", ".rels")):
                try:
                    with archive.open(entry) as part:
                        head = part.read(4096)
                except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                    raise ManifestError(f"{path}: damaged workbook ({one_line(exc)})") from None
                if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                    raise ManifestError(f"{path}: refused: {entry.filename} declares a DTD "
                                        "(XML entities are not accepted in a workbook)")


def read_sheet(path: Path, sheet: str | int | None, *, nrows: int | None = None) -> tuple[str, list[list[Any]]]:
    """The name of the sheet ``sheet`` picks (:func:`find_sheet`) and its first ``nrows`` rows
    (all without it), from cell A1 on, as lists of Python values: an empty cell is ``""``, a
    whole number ``int`` (Excel's 3.0 too), other numbers ``float``."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pd.ExcelFile(path, engine="calamine") as book:
                name = find_sheet(path, [str(n) for n in book.sheet_names], sheet)
                frame = book.parse(name, header=None, dtype=object, na_filter=False, nrows=nrows)
    except ManifestError:
        raise
    except OSError as exc:
        raise cannot_read(path, exc) from None
    except Exception as exc:  # calamine reports a damaged or foreign file in several ways
        raise ManifestError(f"{not_a_workbook(path)}: {one_line(exc)}") from None
    return name, frame.values.tolist()


def not_a_workbook(path: Path) -> str:
    """The one line for a file named ``.xlsx`` that is none: damaged, or another kind of file,
    with what it looks like when its first bytes tell."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        head = b""
    if head.startswith(OLE_MAGIC):
        looks = ": it is an old .xls workbook or a password-protected one; save it as .xlsx without a password"
    elif head and all(byte >= 32 or byte in b"\t\r\n" for byte in head.removeprefix(b"\xef\xbb\xbf")):
        looks = ": it holds text (a CSV file renamed?)"
    else:
        looks = ""
    return f"{path}: not a valid {path.suffix.lower()} (damaged, or not an Excel file){looks}"


def find_sheet(path: Path, names: list[str], sheet: str | int | None) -> str:
    """The worksheet ``sheet`` names: ``None`` the first; text an exact name, else a name that
    differs only in case (as Excel matches), else a position counted from 1 (``"2"``: the
    second); an ``int`` a position counted from 0. Anything else is a :class:`ManifestError`
    that lists the workbook's sheets."""
    if not names:
        raise ManifestError(f"{path}: the workbook has no worksheet")
    if sheet is None:
        return names[0]
    if isinstance(sheet, int):
        if 0 <= sheet < len(names):
            return names[sheet]
        raise ManifestError(f"{path}: no sheet at index {sheet}; {_listing(names)}")
    if sheet in names:
        return sheet
    folded = sheet.strip().casefold()
    for name in names:
        if name.strip().casefold() == folded:
            return name
    if folded.isascii() and folded.isdigit():
        position = int(folded)
        if 1 <= position <= len(names):
            return names[position - 1]
        raise ManifestError(f"{path}: no sheet named {sheet!r}, and no sheet {position} counting from 1; "
                            f"{_listing(names)}")
    raise ManifestError(f"{path}: no sheet named {sheet!r}; {_listing(names)}")


def _listing(names: list[str]) -> str:
    """``the workbook's 2 sheets are 'a' and 'b'``, the first ``LISTED_SHEETS`` of them."""
    shown = [repr(name) for name in names[:LISTED_SHEETS]]
    if len(names) > LISTED_SHEETS:
        shown.append(f"{len(names) - LISTED_SHEETS} more")
    if len(names) == 1:
        return f"the workbook's one sheet is {shown[0]}"
    return f"the workbook's {len(names)} sheets are {', '.join(shown[:-1])} and {shown[-1]}"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
