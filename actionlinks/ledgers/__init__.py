"""Optional ledger backends; each lives in its own module."""
