"""Terminal output for the CLI's interactive commands: stdout/stderr writes that flush, display
width of a character, word wrapping at the terminal's edge, and the waiting spinner."""
from __future__ import annotations

import os
import sys
import threading
import unicodedata


def out(text: str) -> None:
    """Write to stdout now (replies stream a piece at a time)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    """Write to stderr now (status, stats, help: what is not the answer)."""
    sys.stderr.write(text)
    sys.stderr.flush()


def char_width(ch: str) -> int:
    """Columns ``ch`` takes on a terminal: 2 for East Asian wide and full-width characters."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def terminal_width() -> int:
    """Columns of the terminal stdout is, 0 when it is not one."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 0


class WordWrapper:
    """Streams text to stdout, moving a word that would cross the right edge to the next line."""

    def __init__(self, enabled: bool) -> None:
        self.line_length = 0
        self.word = ""
        self.width = terminal_width() if enabled else 0

    def write(self, text: str) -> None:
        if self.width < 10:
            out(self.word + text)
            self.word = ""
            return
        parts: list[str] = []
        for ch in text:
            w = char_width(ch)
            if self.line_length + 1 > self.width - 5:
                word_width = sum(char_width(c) for c in self.word)
                if word_width > self.width - 10:       # a word longer than a line: just break it
                    parts.append(self.word + ch)
                    self.word, self.line_length = "", 0
                    continue
                # move back over the partial word, clear to the end of the line, reprint it below
                parts.append((f"\x1b[{word_width}D" if word_width else "") + "\x1b[K\n" + self.word + ch)
                self.line_length = word_width + w
            else:
                parts.append(ch)
                self.line_length += w
                if w >= 2 or ch in " \t":
                    self.word = ""
                elif ch in "\r\n":
                    self.line_length, self.word = 0, ""
                else:
                    self.word += ch
        out("".join(parts))


class Spinner:
    """A braille spinner on stderr while waiting for the first token (only on a terminal)."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if sys.stderr.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        i = 0
        while not self._stop.wait(0.1):
            err("\r" + self.FRAMES[i % len(self.FRAMES)] + " ")
            i += 1

    def stop(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            err("\r\x1b[K")
        self._stop.set()
