"""anonanalyze: replay a recording into the eager model and the alternative designs."""
