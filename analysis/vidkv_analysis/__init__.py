"""VidKV analysis: plots and reports from trace (HDF5) and experiment-result (CSV/JSONL) files.

Reads files only; never imports the C++ code. Command line: `python -m vidkv_analysis report RESULTS_DIR` and
`python -m vidkv_analysis trace-plots TRACE.h5 --out DIR` (see analysis/README.md).
"""

__version__ = "0.1.0"
