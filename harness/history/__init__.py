"""History: one time series per cell across run folders, steps found in it, and a
page (docs/history.md). Framework-free: it reads run folders, never runs a cell.

series.py gathers the runs into series, steps.py finds the changes of level in
each, page.py writes history.md and the self-contained history.html."""
