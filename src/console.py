"""Console output while a run trains: the lecture's line per epoch for short
runs, a progress line for long ones."""

import logging
import sys
import time

log = logging.getLogger(__name__)


class BelowLevel(logging.Filter):
    """Pass records below `level`, so stdout and stderr handlers split the
    output without printing a record twice."""

    def __init__(self, level: str = "WARNING") -> None:
        super().__init__()
        self.level = logging.getLevelName(level)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class EpochReporter:
    """Report each epoch's error, as a line or as progress, by run length.

    Short runs print the lecture's "Average Error in epoch N is: X" line per
    epoch. Long runs redraw one progress line on a terminal, and elsewhere
    (a log file, a cluster job) log a summary line every `summary_interval_s`
    seconds.
    """

    def __init__(self, epochs: int, epoch_lines_max: int, summary_interval_s: float = 10.0,
                 in_sweep: bool = False) -> None:
        self.epochs = epochs
        # Lines of parallel sweep jobs would interleave; a sweep job logs
        # summaries instead.
        self.lines = epochs <= epoch_lines_max and not in_sweep
        self.interactive = sys.stdout.isatty() and not in_sweep
        self.in_sweep = in_sweep
        self.summary_interval_s = summary_interval_s
        self.start = time.monotonic()
        # A sweep job's first summary comes after one interval; other runs
        # report their first epoch at once.
        self.last_report = self.start if in_sweep else 0.0

    def __call__(self, epoch: int, error: float) -> None:
        if self.lines:
            log.info("Average Error in epoch %d is: %s", epoch, error)
            return

        now = time.monotonic()
        last_epoch = epoch == self.epochs - 1
        if self.interactive:
            if now - self.last_report >= 0.2 or last_epoch:
                self.last_report = now
                sys.stdout.write("\r" + self._progress(epoch, error, now))
                if last_epoch:
                    sys.stdout.write("\n")
                sys.stdout.flush()
        elif now - self.last_report >= self.summary_interval_s or (
                not self.in_sweep and (last_epoch or epoch == 0)):
            self.last_report = now
            log.info(self._progress(epoch, error, now))

    def _progress(self, epoch: int, error: float, now: float) -> str:
        done = epoch + 1
        width = 30
        filled = int(width * done / self.epochs)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = now - self.start
        remaining = elapsed / done * (self.epochs - done)
        return (
            f"[{bar}] epoch {done}/{self.epochs}  error {error:.6g}  "
            f"{elapsed:.0f}s elapsed, about {remaining:.0f}s left"
        )

    def interrupted(self) -> None:
        """End a half-drawn progress line so the next message starts clean."""
        if not self.lines and self.interactive:
            sys.stdout.write("\n")
            sys.stdout.flush()
