"""Sign-ups for campaigns: the data the example app reads and writes."""
