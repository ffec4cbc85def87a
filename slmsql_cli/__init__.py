"""slmsql: plain-language questions over SQLite, answered by a small Text-to-SQL model on the CPU."""

__version__ = "0.1.0"
