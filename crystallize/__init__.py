"""Crystallize: reproducible experiments as a DAG."""
