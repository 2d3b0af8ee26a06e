"""Reports of a class-averaging run.

:func:`write_report` writes ``report.html``: one self-contained file (inline CSS, images as
base64 PNG data URIs) with the run record, a gallery of every class average in selection-rank
order with its population and score, and plots of the distance distributions.

matplotlib (used for the plots) is imported only when a report is written, and never through
pyplot, so importing this package does not change the user's matplotlib backend.
"""

from .html import scale_bar_angstrom, write_report

__all__ = ["write_report", "scale_bar_angstrom"]
