"""Backdoor data-poisoning research library behind the Snakemake workflow."""
__version__ = "0.1.0"
