"""The `softswitch` command line (click): one file per noun."""
