"""rmr_dist: distributed JAX Reasoning-Modulated Representations."""
