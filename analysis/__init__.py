"""Post-study analysis: reads the study's results and writes the report (tables and figures,
``python analysis/report.py``)."""
