"""Metrics and reports for generated talking-head videos."""
