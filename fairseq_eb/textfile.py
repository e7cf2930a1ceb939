"""Read a UTF-8 text file as lines, with errors that name the file and line (dependency-free)."""
from pathlib import Path
from typing import List, Union

BOM = "\ufeff"


def read_lines(path: Union[str, Path]) -> List[str]:
    """The lines of ``path`` without their ``\\n`` / ``\\r\\n``; a leading UTF-8 byte-order mark is dropped.

    Why: editors on some systems start UTF-8 files with a BOM, which would otherwise become part of
    the first line's first token and silently lower its scores. Invalid UTF-8 raises ``ValueError``
    naming the file, the line and the byte, instead of a bare codec error.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 ({e.reason} at byte {data[e.start]:#04x}); "
                         "convert the file to UTF-8 (e.g. iconv -f GB18030 -t UTF-8)") from None
    if text.startswith(BOM):
        text = text[1:]
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
