"""Table 2 and Figure 5: every method trained and scored under one protocol."""
