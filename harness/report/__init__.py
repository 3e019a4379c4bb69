"""The sweep report: `write_report` (called at the end of every study) and
`python -m harness.report <sweep_dir>` write report.md, a self-contained report.html, the
transfer tables and figures."""
from harness.report.transfer_plot import plot_transfer
from harness.report.write import write_report

__all__ = ["plot_transfer", "write_report"]
