"""Acting (Atari): policy heads, base policies and the plain-Python collector."""
