"""Hydra plugins of dmfrag: `hydra/launcher=dmfrag_ray` and `hydra/sweeper=dmfrag`."""
