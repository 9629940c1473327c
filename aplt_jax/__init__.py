"""aplt_jax: Asynchronous Pseudo Labeling and Training for semi-supervised micro-action recognition."""

__version__ = "0.1.0"
