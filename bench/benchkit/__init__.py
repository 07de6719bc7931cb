"""lbsim's benchmark suite: processes, comparison points, workloads and the report.

Run it with ``python bench/run.py``; see bench/README.md.
"""
