"""peft-bench analysis: run records to tables, figures and an HTML report (`python -m analysis`)."""
