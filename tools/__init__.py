"""Developer tools that drive the running platform from outside (over REST)."""
