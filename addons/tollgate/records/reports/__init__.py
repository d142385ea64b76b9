"""Reports read from audit files: `tollgate usage` and `tollgate inventory`."""
